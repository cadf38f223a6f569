"""The viewer's ASGI app: routes, error pages, security headers.

Every page is server-rendered from the read model (``asyncflow.reading``)
through autoescaping Jinja2 templates. A request with the header
``X-Asyncflow-Partial: 1`` gets only the page's live region: that is what
``static/ui.js`` polls while a run is live, and swaps in without a reload.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from asyncflow import (
    AsyncflowError,
    CheckpointCorrupt,
    ConfigurationError,
    StorageError,
    StorageUnavailable,
)
from asyncflow.providers import Storage
from asyncflow.reading import (
    RecordCache,
    RunState,
    TaskState,
    read_history,
    read_latest,
    read_past_run,
    read_task,
    validate_id,
    with_summary_error,
)
from asyncflow.ui import _actions
from asyncflow.ui._catalog import STATUSES, Catalog
from asyncflow.ui._guard import (
    CSRF_COOKIE,
    TOKEN_COOKIE,
    Refused,
    check_action,
    check_form,
    csrf_value,
    read_form,
    token_proof,
    unlocked,
)
from asyncflow.ui._svg import COLORS, MAX_ROWS, gantt_svg, graph_svg

__all__ = ["create_app"]

logger = logging.getLogger("asyncflow.ui")
_HERE = Path(__file__).parent
PER_PAGE = 50
_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    try:
        moment = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)
    except (ValueError, OverflowError, OSError, TypeError):  # a tampered record's time
        return f"invalid time {timestamp!r}"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    """One per process: templates compile once, however many apps are made."""
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["took"] = _took
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.globals["COLORS"] = COLORS
    env.globals["STATUSES"] = STATUSES
    env.globals["MAX_ROWS"] = MAX_ROWS
    return env


class _SecurityHeaders:
    """CSP and friends on every response: the pages load nothing but their own files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", _CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


Handler = Callable[[Request], Awaitable[Response]]


class _Viewer:
    def __init__(self, storage: Storage, actions: bool, token: str | None) -> None:
        self.storage = storage
        self.actions = actions
        self.token = token
        self.catalog = Catalog(storage)
        self.records = RecordCache()
        self.env = _environment()

    def url(self, request: Request, path: str, **query: Any) -> str:
        root = str(request.scope.get("root_path", ""))
        params = {k: v for k, v in query.items() if v not in (None, "")}
        return root + path + ("?" + urlencode(params) if params else "")

    def render(
        self, request: Request, name: str, code: int = 200, *, live: bool = False, **values: Any
    ) -> Response:
        csrf, new = csrf_value(request) if self.actions else ("", False)
        root = str(request.scope.get("root_path", ""))
        here = request.url.path[len(root) :] if request.url.path.startswith(root) else "/"
        if request.url.query:
            here += "?" + request.url.query
        partial = request.headers.get("x-asyncflow-partial") == "1"
        html = self.env.get_template(name).render(
            request=request,
            url=lambda path, **q: self.url(request, path, **q),
            actions=self.actions,
            need_token=not unlocked(request, self.token),
            here=here,
            csrf=csrf,
            live=live,
            partial=partial,
            **values,
        )
        response = HTMLResponse(html, status_code=code, headers={"cache-control": "no-store"})
        response.headers["x-asyncflow-live"] = "1" if live else "0"
        if new:
            response.set_cookie(
                CSRF_COOKIE,
                csrf,
                httponly=True,
                samesite="strict",
                path=request.scope.get("root_path", "") or "/",
            )
        return response

    def problem(self, request: Request, status: int, title: str, detail: str) -> Response:
        return self.render(request, "error.html", status, title=title, detail=detail)

    def page(self, handler: Handler) -> Handler:
        """Every failure becomes a page that says what went wrong, never a stack trace."""

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as exc:
                return self.problem(request, exc.status, exc.title, exc.detail)
            except HTTPException as exc:
                return self.problem(request, exc.status_code, "Not found", str(exc.detail))
            except ConfigurationError as exc:
                return self.problem(request, 400, "Bad request", str(exc))
            except CheckpointCorrupt as exc:
                return self.problem(request, 500, "Corrupt record in storage", str(exc))
            except StorageUnavailable as exc:
                return self.problem(request, 503, "Storage unreachable", str(exc))
            except StorageError as exc:
                return self.problem(request, 502, "Storage error", str(exc))
            except AsyncflowError as exc:
                return self.problem(request, 500, type(exc).__name__, str(exc))
            except Exception as exc:
                logger.exception("viewer: %s %s failed", request.method, request.url.path)
                return self.problem(
                    request, 500, "Unexpected error", f"{type(exc).__name__}: {exc} (see the log)"
                )

        return guarded

    def workflow_id(self, request: Request) -> str:
        return validate_id(request.path_params["workflow_id"], "workflow id")

    def task_link(self, request: Request, run: RunState) -> Callable[[TaskState], str]:
        base = f"/workflows/{quote(run.workflow_id, safe='')}/tasks/"
        return lambda task: self.url(request, base + quote(task.key, safe=""))

    async def workflows(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        query = request.query_params.get("q", "")[:200]
        try:
            number = int(request.query_params.get("page", "1"))
        except ValueError:
            raise Refused(400, "Bad request", "page must be a number") from None
        listing = await self.catalog.page(
            status=status, query=query, page=number, per_page=PER_PAGE, fresh=False
        )
        response = self.render(
            request,
            "workflows.html",
            live=listing.reading is not None,
            listing=listing,
            status=status,
            query=query,
        )
        if self.catalog.stale:
            response.background = BackgroundTask(self.catalog.refresh)
        return response

    async def workflow(self, request: Request) -> Response:
        workflow_id = self.workflow_id(request)
        run = await read_latest(self.storage, workflow_id, self.records)
        if run is None:
            raise Refused(404, "Unknown workflow", f"no workflow {workflow_id!r} in this storage")
        return self.show_run(request, run)

    async def past_run(self, request: Request) -> Response:
        workflow_id = self.workflow_id(request)
        run_id = request.path_params["run_id"]
        run = await read_past_run(self.storage, workflow_id, run_id)
        if run is None:
            raise Refused(404, "Unknown run", f"workflow {workflow_id!r} has no run {run_id!r}")
        return self.show_run(request, run)

    def show_run(self, request: Request, run: RunState) -> Response:
        link = self.task_link(request, run)
        return self.render(
            request,
            "run.html",
            live=run.live and run.latest,
            run=run,
            graph=graph_svg(run, link),
            gantt=gantt_svg(run, link),
            link=link,
            notice=request.query_params.get("done", "")[:200],
        )

    async def history(self, request: Request) -> Response:
        workflow_id = self.workflow_id(request)
        try:
            number = int(request.query_params.get("page", "1"))
        except ValueError:
            raise Refused(400, "Bad request", "page must be a number") from None
        history = await read_history(self.storage, workflow_id, page=number, per_page=PER_PAGE)
        if history is None:
            raise Refused(404, "Unknown workflow", f"no workflow {workflow_id!r} in this storage")
        live = any(r.status in ("running", "waiting") for r in history.rows)
        return self.render(request, "history.html", live=live, history=history)

    async def task(self, request: Request) -> Response:
        workflow_id = self.workflow_id(request)
        key = request.path_params["key"]
        detail = await read_task(self.storage, workflow_id, key)
        if detail is None:
            raise Refused(
                404, "Unknown task", f"workflow {workflow_id!r} has no task with key {key!r}"
            )
        task = await with_summary_error(self.storage, detail.run, detail.task)
        return self.render(request, "task.html", live=detail.run.live, detail=detail, task=task)

    async def signal(self, request: Request) -> Response:
        workflow_id = self.workflow_id(request)
        form = await read_form(request)
        check_action(request, form, actions=self.actions, token=self.token)
        name = validate_id(form.get("name", ""), "signal name")
        payload = _actions.parse_payload(form.get("payload", ""))
        await _actions.send_signal(self.storage, workflow_id, name, payload)
        logger.info("viewer: signal %s sent to %s", name, workflow_id)
        self.catalog.forget(workflow_id)
        return self.done(request, workflow_id, f"signal {name} sent")

    async def reset(self, request: Request) -> Response:
        workflow_id = self.workflow_id(request)
        form = await read_form(request)
        check_action(request, form, actions=self.actions, token=self.token)
        key = form.get("key", "")
        if not key:
            raise Refused(400, "Bad request", "the form names no task key")
        stale = await _actions.reset_from(self.storage, workflow_id, key)
        logger.info("viewer: %s reset from %s (%s)", workflow_id, key, ", ".join(stale))
        self.catalog.forget(workflow_id)
        return self.done(
            request, workflow_id, f"reset from {key}: the next resume re-runs {', '.join(stale)}"
        )

    async def unlock(self, request: Request) -> Response:
        form = await read_form(request)
        check_form(request, form, actions=self.actions)
        if self.token is None:
            raise Refused(400, "Nothing to unlock", "this viewer has no access token")
        offered = form.get("token", "")
        if not offered or not hmac.compare_digest(offered.encode(), self.token.encode()):
            raise Refused(403, "Wrong token", "that is not this viewer's access token")
        back = form.get("next", "")
        if not back.startswith("/") or back.startswith("//"):
            back = "/"
        response = RedirectResponse(self.url(request, back), status_code=303)
        response.set_cookie(
            TOKEN_COOKIE,
            token_proof(self.token),
            httponly=True,
            samesite="strict",
            path=request.scope.get("root_path", "") or "/",
        )
        return response

    def done(self, request: Request, workflow_id: str, message: str) -> Response:
        target = self.url(request, f"/workflows/{quote(workflow_id, safe='')}", done=message)
        return RedirectResponse(target, status_code=303)

    async def not_found(self, request: Request) -> Response:
        raise Refused(404, "Not found", f"no page at {request.url.path}")


def create_app(
    storage: Storage,
    *,
    actions: bool = False,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The run viewer as an ASGI app over ``storage``; mount it anywhere.

    Read-only unless ``actions`` (then: send a signal, reset from a task,
    as CSRF-protected POSTs; with ``token`` they also need that token).
    ``allowed_hosts`` restricts the ``Host`` header (``asyncflow ui`` sets
    it on a loopback address, against DNS rebinding). The app does not own
    ``storage``: closing it is the caller's business.
    """
    if token is not None and not token:
        raise ConfigurationError("the viewer's token must not be empty")
    viewer = _Viewer(storage, actions, token)
    page = viewer.page
    routes = [
        Route("/", page(viewer.workflows)),
        Route("/workflows/{workflow_id}", page(viewer.workflow)),
        Route("/workflows/{workflow_id}/runs", page(viewer.history)),
        Route("/workflows/{workflow_id}/runs/{run_id}", page(viewer.past_run)),
        Route("/workflows/{workflow_id}/tasks/{key}", page(viewer.task)),
        Route("/workflows/{workflow_id}/signal", page(viewer.signal), methods=["POST"]),
        Route("/workflows/{workflow_id}/reset", page(viewer.reset), methods=["POST"]),
        Route("/unlock", page(viewer.unlock), methods=["POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        Route("/{rest:path}", page(viewer.not_found), methods=["GET", "POST"]),
    ]
    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            viewer.catalog.attach(group)  # the workflows index starts building now
            try:
                yield
            finally:
                group.cancel_scope.cancel()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.catalog = viewer.catalog  # the workflows index, for tests and benchmarks
    app.state.records = viewer.records
    return app
