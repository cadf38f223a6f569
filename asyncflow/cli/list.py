"""``asyncflow list``: every workflow in a storage and how its latest run stands."""

from __future__ import annotations

import json
import time

import anyio
import click
import rich.text

from asyncflow.cli._app import cli
from asyncflow.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    STYLES,
    CliError,
    SuggestingChoice,
    console,
    debug_option,
    new_table,
    open_storage,
    reporting,
    storage_option,
    when,
)
from asyncflow.cli._common import storage_url as url_of
from asyncflow.reading import WorkflowInfo, list_workflows, parse_duration

__all__ = ["list_command"]

STATUSES = (
    "running",
    "completed",
    "failed",
    "cancelled",
    "crashed",
    "waiting",
    "forked",
    "reset",
)


def _progress(info: WorkflowInfo) -> str:
    if not info.outcomes:
        return f"-/{info.tasks}"
    done = info.outcomes.get("completed", 0) + info.outcomes.get("skipped", 0)
    failed = info.outcomes.get("failed", 0)
    text = f"{done}/{info.tasks}"
    return f"{text}, {failed} failed" if failed else text


@cli.command("list")
@click.option(
    "--status",
    "wanted",
    multiple=True,
    type=SuggestingChoice(STATUSES),
    help="Only workflows whose latest run has this status (repeatable).",
)
@click.option("--since", metavar="AGE", help="Only workflows updated within AGE (1d, 12h, 30m).")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@storage_option
@debug_option
def list_command(
    wanted: tuple[str, ...],
    since: str | None,
    output: str,
    storage_url: str | None,
    debug: bool,
) -> int:
    """List the workflows in a storage with their latest run's status.

    One listing of workflow ids plus one read of each run.json; task
    records are never read.
    """
    with reporting(debug):
        try:
            cutoff = time.time() - parse_duration(since) if since is not None else None
        except Exception as exc:
            raise CliError(f"--since: {exc}", EXIT_USAGE) from None
        storage = open_storage(storage_url)

        async def read() -> list[WorkflowInfo]:
            try:
                return await list_workflows(storage)
            finally:
                await storage.aclose()

        found = [
            info
            for info in anyio.run(read)
            if (not wanted or info.status in wanted)
            and (cutoff is None or (info.updated_at or 0.0) >= cutoff)
        ]
        if output == "json":
            click.echo(json.dumps([info.to_json() for info in found], indent=2))
            return EXIT_OK
        out = console()
        if not found:
            filters = [f"--status {status}" for status in wanted]
            filters += [f"--since {since}"] if since is not None else []
            match = f" match {' '.join(filters)}" if filters else ""
            out.print(f"no workflows{match} in {url_of(storage_url)}", markup=False)
            return EXIT_OK
        table = new_table("workflow", "status", "tasks", "updated", whole=("status", "updated"))
        for info in found:
            table.add_row(
                info.workflow_id,
                rich.text.Text(info.status, style=STYLES.get(info.status, "")),
                _progress(info),
                when(info.updated_at),
            )
        out.print(table)
    return EXIT_OK
