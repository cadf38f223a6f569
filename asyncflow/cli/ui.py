"""``asyncflow ui``: serve the run viewer over a storage (needs the ``ui`` extra)."""

from __future__ import annotations

import re
from typing import Any

import click

from asyncflow.cli._app import cli
from asyncflow.cli._common import (
    DEFAULT_STORAGE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    debug_option,
    open_storage,
    reporting,
    storage_option,
)

__all__ = ["ui"]


def _shown(url: str) -> str:
    """The storage URL without any ``user:secret@`` part."""
    return re.sub(r"://[^/@]*@", "://", url)


class _ClosingStorage:
    """The viewer app, its lifespan run, and its storage closed when the server shuts down."""

    def __init__(self, app: Any, storage: Any) -> None:
        self.app = app
        self.storage = storage

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        async with self.app.router.lifespan_context(self.app):  # the workflows index warms up
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    break
        await self.storage.aclose()
        await send({"type": "lifespan.shutdown.complete"})


@cli.command()
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8321, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--actions",
    is_flag=True,
    help="Allow sending signals and resetting tasks (CSRF-protected POSTs).",
)
@click.option(
    "--token",
    envvar="ASYNCFLOW_UI_TOKEN",
    metavar="TOKEN",
    help="Access token the actions need (env ASYNCFLOW_UI_TOKEN); required for"
    " --actions on a non-loopback --host.",
)
@debug_option
def ui(
    storage_url: str | None,
    host: str,
    port: int,
    actions: bool,
    token: str | None,
    debug: bool,
) -> int:
    """Serve the run viewer: every workflow and run in the storage, in a browser."""
    with reporting(debug):
        try:
            import uvicorn

            from asyncflow.ui import create_app
            from asyncflow.ui._guard import is_loopback
        except ImportError as exc:
            raise CliError(
                f"asyncflow ui needs its extra ({exc.name} is missing):"
                " pip install 'asyncflow-durable[ui]'",
                EXIT_USAGE,
            ) from None
        loopback = is_loopback(host)
        if actions and not loopback and not token:
            raise CliError(
                f"--actions on the non-loopback host {host} needs --token"
                " (or ASYNCFLOW_UI_TOKEN): anyone who can reach it could act otherwise",
                EXIT_USAGE,
            )
        url = storage_url or DEFAULT_STORAGE
        storage = open_storage(url)
        allowed = [host, "localhost", "127.0.0.1", "[::1]", "::1"] if loopback else None
        app = create_app(storage, actions=actions, token=token or None, allowed_hosts=allowed)
        where = f"[{host}]" if ":" in host else host
        mode = "actions on" if actions else "read-only"
        click.echo(f"asyncflow ui: {_shown(url)} on http://{where}:{port}/ ({mode})", err=True)
        if not loopback:
            click.echo(
                f"warning: listening on {host}: anyone who can reach it can read every"
                " workflow in this storage",
                err=True,
            )
        config = uvicorn.Config(
            _ClosingStorage(app, storage),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        uvicorn.Server(config).run()
    return EXIT_OK
