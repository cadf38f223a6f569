"""``asyncflow signal``: send a signal to a workflow (a durable ``wait.signal`` step)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import click

from asyncflow import signal as send_signal
from asyncflow.cli._app import cli
from asyncflow.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    debug_option,
    open_storage,
    reporting,
    storage_option,
    validated_id,
)
from asyncflow.reading import validate_id

__all__ = ["signal"]


@cli.command()
@click.argument("workflow_id", metavar="ID")
@click.argument("name")
@click.option("--data", metavar="JSON", help="The payload, as JSON (default: null).")
@click.option(
    "--before-start",
    is_flag=True,
    help="ID has not started yet: keep the signal for its first start.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    metavar="N",
    help="Refuse a payload over N bytes encoded (default: 64 MiB, Config's max_output_bytes).",
)
@storage_option
@debug_option
def signal(
    workflow_id: str,
    name: str,
    data: str | None,
    before_start: bool,
    max_bytes: int | None,
    storage_url: str | None,
    debug: bool,
) -> int:
    """Send the signal NAME to workflow ID, once (a second send of NAME is an error).

    Refused for a workflow that does not exist (unless --before-start) or
    that has completed.
    """
    with reporting(debug):
        workflow_id = validated_id(workflow_id)
        try:
            validate_id(name, "signal name")
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        payload: Any = None
        if data is not None:
            try:
                payload = json.loads(data)
            except ValueError as exc:
                raise CliError(f"--data is not valid JSON: {exc}", EXIT_USAGE) from None
        storage = open_storage(storage_url)

        async def send() -> None:
            try:
                if max_bytes is None:
                    await send_signal(
                        storage, workflow_id, name, payload, before_start=before_start
                    )
                else:
                    await send_signal(
                        storage,
                        workflow_id,
                        name,
                        payload,
                        before_start=before_start,
                        max_bytes=max_bytes,
                    )
            finally:
                await storage.aclose()

        anyio.run(send)
        kept = " (kept for its first start)" if before_start else ""
        click.echo(f"sent signal {name} to workflow {workflow_id}{kept}")
    return EXIT_OK
