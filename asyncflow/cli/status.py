"""``asyncflow status``: a workflow's latest run, read from storage."""

from __future__ import annotations

import json
import time

import anyio
import click
import rich.console
import rich.table

from asyncflow._core.status import LeaseState, RunState, read_run
from asyncflow.cli._app import cli
from asyncflow.cli._common import (
    DEFAULT_STORAGE,
    EXIT_FAILED,
    EXIT_OK,
    STYLES,
    CliError,
    debug_option,
    open_storage,
    reporting,
    seconds,
    storage_option,
    validated_id,
    when,
)
from asyncflow.mermaid import run_mermaid

__all__ = ["status"]


def _lease_text(lease: LeaseState | None) -> str:
    if lease is None:
        return "none"
    if lease.released:
        return "released"
    who = f"runner {lease.runner_id[:8]} (host {lease.host}, pid {lease.pid})"
    if lease.holder_gone:
        return f"held by {who}, whose process is gone: the next run takes it over"
    if lease.expires_at <= time.time():
        return f"expired ({who})"
    return f"live: {who}, until {when(lease.expires_at)} unless renewed"


def _status_table(state: RunState, console: rich.console.Console) -> None:
    style = STYLES.get(state.status, "")
    console.print(
        f"workflow [bold]{state.workflow_id}[/]: [{style}]{state.status}[/]"
        f"  mode {state.mode or '-'}  updated {when(state.updated_at)}",
        highlight=False,
    )
    console.print(f"lease: {_lease_text(state.lease)}", highlight=False)
    for key, wait in state.waiting.items():
        if wait.get("kind") == "signal":
            limit = wait.get("deadline")
            until = f", times out at {when(limit)}" if limit is not None else ""
            text = f"signal {wait.get('signal')!r}{until}"
        else:
            text = f"its wake time {when(wait.get('wake_at'))}"
        console.print(f"waiting: key {key} for {text}", highlight=False)
    if state.status == "waiting":
        due = "when a signal arrives" if state.due_at is None else when(state.due_at)
        console.print(
            f"due: {due}; `asyncflow worker` (or `asyncflow run --resume --park`) resumes it",
            highlight=False,
        )
    if state.status == "running" and (state.lease is None or not state.lease.live):
        console.print(
            "no live runner: the run was interrupted; `asyncflow run --resume` resumes it"
        )
    table = rich.table.Table()
    for column in ("#", "step", "key", "status", "attempts", "duration", "finished"):
        table.add_column(column)
    for task in state.tasks:
        table.add_row(
            "-" if task.task_id is None else str(task.task_id),
            task.step,
            task.key,
            f"[{STYLES[task.status]}]{task.status}[/]",
            "-" if task.attempts is None else str(task.attempts),
            seconds(task.duration),
            when(task.finished_at)[11:],
        )
    console.print(table)
    for task in state.tasks:
        if task.error:
            console.print(
                f"[red]{task.step}[/] (key {task.key}) failed: {task.error}", highlight=False
            )
    for name in state.extra_records:
        console.print(f"[yellow]record of no task in run.json:[/] {name}", highlight=False)


@cli.command()
@click.argument("workflow_id", metavar="ID")
@storage_option
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "mermaid"]),
    default="table",
    show_default=True,
)
@debug_option
def status(workflow_id: str, storage_url: str | None, output: str, debug: bool) -> int:
    """Show a workflow's latest run, read from storage (nothing is run)."""
    with reporting(debug):
        workflow_id = validated_id(workflow_id)
        storage = open_storage(storage_url)

        async def read() -> RunState | None:
            try:
                return await read_run(storage, workflow_id)
            finally:
                await storage.aclose()

        state = anyio.run(read)
        if state is None:
            raise CliError(
                f"no workflow {workflow_id} in {storage_url or DEFAULT_STORAGE}", EXIT_FAILED
            )
        if output == "json":
            click.echo(json.dumps(state.to_json(), indent=2))
        elif output == "mermaid":
            click.echo(run_mermaid(state), nl=False)
        else:
            _status_table(state, rich.console.Console())
    return EXIT_OK
