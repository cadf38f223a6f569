"""What stands between a POST and an action: actions switched on, CSRF, the token.

CSRF is a double submit: each page with a form carries a random value both
in a ``SameSite=Strict`` cookie and in the form; another site can make a
browser send the cookie but cannot read it to fill in the form. A request
whose ``Origin`` names another host is refused too. With a token (required
by ``asyncflow ui`` on a non-loopback host) the browser must have unlocked
the actions once (``POST /unlock`` with the token sets an ``HttpOnly``
cookie holding a value derived from it), or the form carry the token, or the
request an ``Authorization: Bearer`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request

__all__ = [
    "CSRF_COOKIE",
    "TOKEN_COOKIE",
    "Refused",
    "check_action",
    "check_form",
    "csrf_value",
    "is_loopback",
    "read_form",
    "token_proof",
    "unlocked",
]

CSRF_COOKIE = "asyncflow_csrf"
TOKEN_COOKIE = "asyncflow_unlock"
MAX_FORM_BYTES = 64 * 1024


class Refused(Exception):
    """A request the viewer will not serve; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def csrf_value(request: Request) -> tuple[str, bool]:
    """This browser's CSRF value and whether it is new (the response must set the cookie)."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if len(value) >= 32:
        return value, False
    return secrets.token_urlsafe(32), True


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form (the only kind the pages send), bounded in size."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise Refused(415, "Unsupported form", f"expected an urlencoded form, got {kind or '-'}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "Form too large", f"a form is limited to {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise Refused(400, "Bad form", "the form is not UTF-8") from None
    return {name: values[-1] for name, values in fields.items()}


def check_form(request: Request, form: dict[str, str], *, actions: bool) -> None:
    """Refuse the POST unless actions are on, it is same-origin and its CSRF value matches."""
    if not actions:
        raise Refused(
            403,
            "Actions are off",
            "this viewer is read-only; start it with `asyncflow ui --actions` to send"
            " signals or reset tasks",
        )
    origin = request.headers.get("origin")
    if (
        origin is not None
        and origin != "null"
        and urlsplit(origin).netloc != request.headers.get("host", "")
    ):
        raise Refused(403, "Cross-site request refused", f"origin {origin} is not this site")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Refused(
            403,
            "CSRF check failed",
            "the form's CSRF value does not match this browser's cookie: reload the page"
            " and submit again",
        )


def token_proof(token: str) -> str:
    """What the unlock cookie holds: derived from the token, not the token itself."""
    return hmac.new(token.encode(), b"asyncflow-ui-unlock", hashlib.sha256).hexdigest()


def unlocked(request: Request, token: str | None) -> bool:
    """No token is set, or this browser proved it knows it (``POST /unlock``)."""
    if token is None:
        return True
    cookie = request.cookies.get(TOKEN_COOKIE, "")
    return hmac.compare_digest(cookie.encode(), token_proof(token).encode())


def check_action(
    request: Request, form: dict[str, str], *, actions: bool, token: str | None
) -> None:
    """``check_form``, and with a token: the unlock cookie, the form's or a Bearer token."""
    check_form(request, form, actions=actions)
    if token is None or unlocked(request, token):
        return
    offered = form.get("token", "")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        offered = offered or header[7:].strip()
    if not offered or not hmac.compare_digest(offered.encode(), token.encode()):
        raise Refused(
            403, "Token required", "this action needs the viewer's access token: unlock first"
        )
