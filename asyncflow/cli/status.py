"""``asyncflow status``: a workflow's latest run, its history, why a step failed."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import anyio
import click
import rich.console
import rich.text

from asyncflow.cli._app import cli
from asyncflow.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    STYLES,
    CliError,
    console,
    debug_option,
    new_table,
    open_storage,
    reporting,
    seconds,
    storage_option,
    unknown_workflow,
    validated_id,
    when,
)
from asyncflow.cli._common import storage_url as url_of
from asyncflow.mermaid import run_mermaid
from asyncflow.reading import (
    LeaseState,
    RunState,
    RunSummary,
    TaskState,
    close_matches,
    read_run,
    read_summary,
    run_history,
    workflow_ids,
)

__all__ = ["status"]

#: How many runs of the history the table shows (json shows them all).
HISTORY_SHOWN = 10


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


def _styled(text: str) -> rich.text.Text:
    return rich.text.Text(text, style=STYLES.get(text, ""))


def _task_status(state: RunState, task: TaskState) -> rich.text.Text:
    """A row's status, with why a task was skipped and a map's children that ended."""
    cell = _styled(task.status)
    if task.reason is not None:
        cell.append(f" ({task.reason})")
    done = state.children_done(task.key) if task.kind == "map" else None
    if done is not None and task.status in ("running", "waiting", "pending", "cancelled"):
        cell.append(f" ({done[0]}/{done[1]} children)")
    return cell


def _status_table(state: RunState, runs: list[RunSummary], out: rich.console.Console) -> None:
    head = rich.text.Text(f"workflow {state.workflow_id}: ")
    head.append(_styled(state.status))
    head.append(f"  mode {state.mode or '-'}  updated {when(state.updated_at)}")
    out.print(head)
    if state.run_id:
        out.print(f"run {state.run_id}", markup=False)
    out.print(f"lease: {_lease_text(state.lease)}", markup=False)
    for wait in state.waits:
        if wait.received_at is not None:
            out.print(f"waiting: key {wait.key}: {wait.text}", markup=False)
        else:
            out.print(f"waiting: key {wait.key} for {wait.text}", markup=False)
    if state.status == "waiting":
        due = "when a signal arrives" if state.due_at is None else when(state.due_at)
        if any(wait.received_at is not None for wait in state.waits):
            due = "now (a signal arrived)"
        out.print(
            f"due: {due}; `asyncflow worker` (or `asyncflow run --resume --park`) resumes it",
            markup=False,
        )
    if state.status == "crashed":
        out.print(
            "no live runner: the run crashed or was killed; `asyncflow run --resume` resumes it",
            markup=False,
        )
    if state.status == "reset":
        out.print(
            "reset: `asyncflow run --resume` re-runs the tasks shown as not run",
            markup=False,
        )
    if state.running and state.status == "running":
        out.print(f"running now: {', '.join(state.running)}", markup=False)
    if state.interrupted:
        out.print(f"interrupted in: {', '.join(state.interrupted)}", markup=False)
    latest = runs[-1] if runs and runs[-1].run_id == state.run_id else None
    timing = {t.key: t for t in latest.tasks} if latest is not None else {}
    table = new_table("#", "step", "key", "status", "tries", "duration", whole=("status",))
    for task in state.flow_tasks:
        run = timing.get(task.key) if task.status != "not run" else None  # e.g. reset since
        duration = run.duration if run is not None and run.duration is not None else task.duration
        attempts = run.attempts if run is not None and run.attempts else task.attempts
        table.add_row(
            str(task.index),
            task.step,
            task.key,
            _task_status(state, task),
            "-" if not attempts else str(attempts),
            seconds(duration),
        )
    out.print(table)
    told: set[str] = set()
    if latest is not None:
        _failures(latest, out, tracebacks=False)
        told = {task.key for task in latest.tasks if task.error is not None}
    if latest is None or state.status in ("running", "crashed"):  # the summary has no errors yet
        for task in state.tasks:
            if task.error and task.key not in told:
                out.print(f"{task.step} (key {task.key}) failed: {task.error}", markup=False)
    for name in state.extra_records:
        out.print(f"record of no task in run.json: {name}", markup=False)
    if len(runs) > 1 or (runs and latest is None):
        _history(runs, out)


def _failures(run: RunSummary, out: rich.console.Console, *, tracebacks: bool) -> None:
    if run.error is not None:
        out.print(f"run failed: {run.error.type}: {run.error.message}", markup=False)
        if tracebacks:
            out.print(run.error.traceback.rstrip(), markup=False)
    for task in run.tasks:
        if task.error is None:
            continue
        out.print(
            f"{task.step} (key {task.key}) failed after {task.attempts} attempt(s):"
            f" {task.error.type}: {task.error.message}",
            markup=False,
        )
        if tracebacks:
            out.print(task.error.traceback.rstrip(), markup=False)
    if not tracebacks and (run.error is not None or any(t.error for t in run.tasks)):
        out.print(
            f"(tracebacks: asyncflow status {run.workflow_id} --run {run.run_id})", markup=False
        )


def _history(runs: list[RunSummary], out: rich.console.Console) -> None:
    shown = runs[-HISTORY_SHOWN:]
    title = f"runs ({len(shown)} of {len(runs)}, newest last)" if len(runs) > len(shown) else "runs"
    table = new_table("run", "status", "started", "took", title=title, whole=("run", "started"))
    for run in shown:
        table.add_row(run.run_id, _styled(run.status), when(run.started_at), seconds(run.duration))
    out.print(table)


def _run_table(run: RunSummary, out: rich.console.Console) -> None:
    head = rich.text.Text(f"workflow {run.workflow_id} run {run.run_id}: ")
    head.append(_styled(run.status))
    out.print(head)
    took = seconds(run.duration)
    out.print(f"mode {run.mode}  resume {run.resume}  took {took}", markup=False)
    out.print(f"started {when(run.started_at)}  by {run.host}:{run.pid}", markup=False)
    if run.forked_from:
        out.print(f"forked from {run.forked_from}", markup=False)
    if run.rerun_from:
        out.print(f"rerun from {run.rerun_from}", markup=False)
    if run.interrupted:
        out.print(f"interrupted in: {', '.join(run.interrupted)}", markup=False)
    table = new_table("key", "step", "outcome", "tries", "duration", "finished", whole=("outcome",))
    for task in run.tasks:
        table.add_row(
            task.key,
            task.step,
            _styled(task.outcome),
            str(task.attempts) if task.attempts else "-",
            seconds(task.duration),
            when(task.finished_at)[11:],
        )
    out.print(table)
    _failures(run, out, tracebacks=True)


@dataclass(frozen=True, slots=True)
class _Found:
    state: RunState | None
    runs: list[RunSummary]
    run: RunSummary | None
    known: list[str]


@cli.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--run", "run_id", metavar="RUN_ID", help="Show this run of the history.")
@storage_option
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "mermaid"]),
    default="table",
    show_default=True,
)
@debug_option
def status(
    workflow_id: str, run_id: str | None, storage_url: str | None, output: str, debug: bool
) -> int:
    """Show a workflow's latest run, its run history and why a step failed.

    Read from storage; nothing is run. --run RUN_ID shows one run of the
    history with the tracebacks of its failures.
    """
    with reporting(debug):
        workflow_id = validated_id(workflow_id)
        if run_id is not None:
            run_id = validated_id(run_id)
        storage = open_storage(storage_url)

        async def read() -> _Found:
            try:
                state = await read_run(storage, workflow_id)
                if state is None:
                    return _Found(None, [], None, await workflow_ids(storage))
                runs = await run_history(storage, workflow_id)
                run = None
                if run_id is not None:
                    run = await read_summary(storage, workflow_id, run_id)
                return _Found(state, runs, run, [])
            finally:
                await storage.aclose()

        found = anyio.run(read)
        if found.state is None:
            raise unknown_workflow(workflow_id, found.known, url_of(storage_url))
        if run_id is not None and found.run is None:
            known = [run.run_id for run in found.runs]
            raise CliError(
                f"workflow {workflow_id} has no run {run_id}{close_matches(run_id, known)}",
                EXIT_FAILED,
            )
        if output == "json":
            if found.run is not None:
                click.echo(json.dumps(found.run.to_json(), indent=2))
            else:
                body = found.state.to_json()
                body["runs"] = [run.to_json() for run in found.runs]
                click.echo(json.dumps(body, indent=2))
        elif output == "mermaid":
            click.echo(run_mermaid(found.state), nl=False)
        elif found.run is not None:
            _run_table(found.run, console())
        else:
            _status_table(found.state, found.runs, console())
    return EXIT_OK
