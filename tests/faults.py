"""A programmable loopback HTTP fault proxy for the object-store fault tests.

``FaultProxy`` sits between a storage client and a real S3/GCS server (both on
127.0.0.1) and decides, request by request, what happens:

* ``pass``: forwarded unchanged (the default);
* ``reset``: the connection is dropped before anything is forwarded, so the
  server never sees the request;
* ``drop_reply``: the request is forwarded and carried out, then the reply is
  lost (the connection is reset as the final answer's head arrives);
* ``truncate``: forwarded, and the reply cut off ``keep`` bytes into its
  body (a torn answer: the head promised more than arrives);
* ``delay``: held for some seconds, then forwarded;
* ``status``: answered by the proxy itself with a minimal valid HTTP response
  (``500``, ``503``...; ``Content-Length``, ``Connection: close``), the request
  never reaching the server.

Rules are added per test (``proxy.fail(503, times=2, method="GET", path="/tasks/")``)
and the first rule that matches a request and still has uses left applies.
Every request is logged (method, decoded path, action, time), so a test can
assert that the retries it expects really reached the wire.

Each request gets its own upstream connection: the proxy forces
``Connection: close`` on the request and on the reply, so clients never reuse
a connection and every request passes through the rule check (and aiohttp
never silently re-sends a request on a stale pooled connection).

Run it inside the test's asyncio loop: ``async with FaultProxy(url) as proxy``;
point the client at ``proxy.url``. Everything is bounded in time: a request
that takes longer than ``request_timeout`` seconds is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Action", "FaultProxy", "Request", "Rule"]

Action = Literal["pass", "reset", "drop_reply", "truncate", "delay", "status"]

_REASONS = {
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_PEEK_LIMIT = 4 << 20


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the proxy saw it; ``path`` is percent-decoded (GCS
    object names travel as ``a%2Fb``), without the query string. ``body`` is
    the request body when it has a ``Content-Length`` of at most 4 MiB and no
    ``Expect: 100-continue`` (GCS names the object of an upload in its body),
    else ``b""``."""

    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    at: float
    body: bytes = b""


@dataclass(slots=True)
class Rule:
    """What to do to requests matching ``method``/``path``/``match``.

    ``times`` uses (``None``: forever); ``every``: only every n-th matching
    request is hit (the others pass). ``hits`` counts the requests it hit.
    """

    action: Action
    method: str | None = None
    path: str | None = None
    match: Callable[[Request], bool] | None = None
    times: int | None = 1
    every: int = 1
    status: int = 503
    body: bytes = b""
    seconds: float = 0.0
    keep: int = 0
    hits: int = 0
    seen: int = 0

    def matches(self, request: Request) -> bool:
        if self.method is not None and request.method != self.method.upper():
            return False
        if self.path is not None and self.path not in request.path:
            return False
        return self.match is None or self.match(request)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass(slots=True)
class _Entry:
    request: Request
    action: Action
    upstream_status: int | None = None


@dataclass
class FaultProxy:
    """The proxy. ``rules`` are checked in order; see the module docstring."""

    upstream_url: str
    request_timeout: float = 30.0
    rules: list[Rule] = field(default_factory=list)
    log: list[_Entry] = field(default_factory=list)
    url: str = ""
    _server: Any = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.upstream_url)
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"FaultProxy only fronts loopback servers, not {self.upstream_url}")
        self.upstream_host = parsed.hostname
        self.upstream_port = parsed.port or 80

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    # -- programming it --------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def fail(
        self,
        status: int = 503,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        match: Callable[[Request], bool] | None = None,
        every: int = 1,
        body: bytes = b"",
    ) -> Rule:
        """Answer ``status`` instead of the server."""
        return self.add(Rule("status", method, path, match, times, every, status, body))

    def reset(
        self,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        match: Callable[[Request], bool] | None = None,
        every: int = 1,
    ) -> Rule:
        """Drop the connection before forwarding: the server never sees it."""
        return self.add(Rule("reset", method, path, match, times, every))

    def drop_reply(
        self,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        match: Callable[[Request], bool] | None = None,
        every: int = 1,
    ) -> Rule:
        """Forward the request, let the server carry it out, lose the reply."""
        return self.add(Rule("drop_reply", method, path, match, times, every))

    def truncate(
        self,
        keep: int = 0,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        match: Callable[[Request], bool] | None = None,
    ) -> Rule:
        """Forward the request, then cut the reply ``keep`` bytes into its body."""
        return self.add(Rule("truncate", method, path, match, times, keep=keep))

    def delay(
        self,
        seconds: float,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        match: Callable[[Request], bool] | None = None,
        every: int = 1,
    ) -> Rule:
        """Hold the request ``seconds``, then forward it."""
        return self.add(Rule("delay", method, path, match, times, every, seconds=seconds))

    def clear(self) -> None:
        """Back to plain pass-through (the log is kept)."""
        self.rules.clear()

    # -- reading the log ---------------------------------------------------------

    def count(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        action: Action | None = None,
    ) -> int:
        return sum(
            1
            for entry in self.log
            if (method is None or entry.request.method == method.upper())
            and (path is None or path in entry.request.path)
            and (action is None or entry.action == action)
        )

    @property
    def injected(self) -> int:
        """Requests that met a fault (anything but a plain pass)."""
        return sum(1 for entry in self.log if entry.action != "pass")

    def times(self, *, method: str | None = None, path: str | None = None) -> list[float]:
        return [
            entry.request.at
            for entry in self.log
            if (method is None or entry.request.method == method.upper())
            and (path is None or path in entry.request.path)
        ]

    # -- the proxy ---------------------------------------------------------------

    def _decide(self, request: Request) -> Rule | None:
        for rule in self.rules:
            if rule.exhausted or not rule.matches(request):
                continue
            rule.seen += 1
            if (rule.seen - 1) % rule.every:
                continue
            rule.hits += 1
            return rule
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await asyncio.wait_for(self._serve(reader, writer), self.request_timeout)
        except (asyncio.TimeoutError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            writer.transport.abort()
            self._handlers.discard(task)

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            head = await creader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return  # the client opened and closed a connection without a request
        request = _parse_request(head)
        peeked = False
        length = request.headers.get("content-length", "")
        if (
            length.isdigit()
            and int(length) <= _PEEK_LIMIT
            and request.headers.get("expect", "").lower() != "100-continue"
        ):
            body = await creader.readexactly(int(length))
            request = dataclasses.replace(request, body=body)
            peeked = True
        rule = self._decide(request)
        action: Action = rule.action if rule is not None else "pass"
        entry = _Entry(request, action)
        self.log.append(entry)
        if rule is not None and rule.action == "reset":
            return  # _accept aborts the connection: nothing was forwarded
        if rule is not None and rule.action == "status":
            if not peeked and request.headers.get("expect", "").lower() != "100-continue":
                await _discard_body(creader, request.headers)
            cwriter.write(_response(rule.status, rule.body))
            await cwriter.drain()
            cwriter.close()
            with contextlib.suppress(ConnectionError, OSError):
                await cwriter.wait_closed()
            return
        if rule is not None and rule.action == "delay":
            await asyncio.sleep(rule.seconds)
        ureader, uwriter = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            uwriter.write(_force_close(head) + request.body)
            forward = asyncio.ensure_future(_pump(creader, uwriter))
            try:
                while True:
                    reply = await ureader.readuntil(b"\r\n\r\n")
                    if reply[9:10] != b"1":  # a final answer, not "100 Continue"
                        break
                    cwriter.write(reply)  # let the body through
                    await cwriter.drain()
                entry.upstream_status = int(reply[9:12])
                if rule is not None and rule.action == "drop_reply":
                    return  # the work is done upstream; the answer is lost
                cwriter.write(_force_close(reply))
                await cwriter.drain()
                if rule is not None and rule.action == "truncate":
                    with contextlib.suppress(asyncio.IncompleteReadError):
                        cwriter.write(await ureader.readexactly(rule.keep))
                        await cwriter.drain()
                    return  # _accept resets the connection mid-body
                await _pump(ureader, cwriter)
                cwriter.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await cwriter.wait_closed()
            finally:
                forward.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forward
        finally:
            uwriter.transport.abort()


def _parse_request(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    split = urllib.parse.urlsplit(target)
    return Request(
        method=method.upper(),
        target=target,
        path=urllib.parse.unquote(split.path),
        query=split.query,
        headers=headers,
        at=time.monotonic(),
    )


def _force_close(head: bytes) -> bytes:
    """The same head with ``Connection: close`` (and no keep-alive)."""
    lines = head[:-4].split(b"\r\n")
    kept = [
        line
        for line in lines[1:]
        if not line.lower().startswith((b"connection:", b"keep-alive:", b"proxy-connection:"))
    ]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"


def _response(status: int, body: bytes) -> bytes:
    reason = _REASONS.get(status, "Injected Fault")
    content_type = b"application/xml" if body.startswith(b"<") else b"text/plain"
    return (
        f"HTTP/1.1 {status} {reason}\r\n".encode()
        + b"Content-Type: "
        + content_type
        + f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


async def _discard_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    """Read the request body so that answering it early does not reset the socket."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return
            await reader.readexactly(size + 2)
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
