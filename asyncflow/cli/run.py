"""``asyncflow run``: run a flow from a file with a live progress bar and a summary."""

from __future__ import annotations

import inspect
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast, get_args

import anyio
import click
import rich.console
import rich.progress
import rich.text

from asyncflow import AsyncFlow, Mode, events
from asyncflow.cli._app import cli
from asyncflow.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    STORAGE_ENV,
    STYLES,
    SuggestingChoice,
    console,
    debug_option,
    new_table,
    reporting,
    seconds,
    storage_option,
    validated_id,
)
from asyncflow.cli._target import check_flow, find_target, load_module, rebuild, split_target
from asyncflow.providers import storage_from_url

__all__ = ["RunProgress", "run", "watch"]


class RunProgress:
    """Counts of a run fed by its events, shown as a rich progress bar."""

    def __init__(self, progress: rich.progress.Progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = self.skipped = self.failed = self.retries = 0
        self.seen: set[str] = set()  # keys: map children add to the total as they appear
        self.in_flight: set[str] = set()
        self.task_id = progress.add_task("starting", total=total or None, **self._fields())

    def _fields(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "retries": self.retries,
            "running": len(self.in_flight),
        }

    def handle(self, event: events.Event) -> None:
        description: str | None = None
        advance = 0
        if isinstance(event, events.TaskEvent) and event.key not in self.seen:
            self.seen.add(event.key)
            if len(self.seen) > self.total:
                self.total = len(self.seen)
                self.progress.update(self.task_id, total=self.total)
        if isinstance(event, events.WorkflowStarted):
            self.total = event.tasks
            self.progress.update(self.task_id, total=event.tasks or None)
        elif isinstance(event, events.TaskStarted):
            self.in_flight.add(event.key)
            description = event.step if event.attempt == 1 else f"{event.step} #{event.attempt}"
        elif isinstance(event, events.TaskCompleted):
            self.in_flight.discard(event.key)
            self.done += 1
            advance = 1
        elif isinstance(event, events.TaskSkipped):
            self.skipped += 1
            advance = 1
            why = "restored" if event.reason == "checkpoint" else event.reason
            description = f"{event.step} ({why})"
        elif isinstance(event, events.TaskFailed):
            self.in_flight.discard(event.key)
            self.failed += 1
            advance = 1
            description = f"{event.step} failed"
        elif isinstance(event, events.TaskRetrying):
            self.retries += 1
            description = f"{event.step} retrying"
        elif isinstance(event, events.TaskWaiting):
            what = event.signal if event.wait == "signal" else "its wake time"
            description = f"{event.step} waits for {what}"
        elif isinstance(event, events.WorkflowFinished):
            self.in_flight.clear()
            description = event.status
        self.progress.update(
            self.task_id, advance=advance, description=description, **self._fields()
        )


def progress_bar(console: rich.console.Console) -> rich.progress.Progress:
    return rich.progress.Progress(
        rich.progress.SpinnerColumn(),
        rich.progress.TextColumn("{task.description:<24}"),
        rich.progress.BarColumn(),
        rich.progress.MofNCompleteColumn(),
        rich.progress.TextColumn(
            "done {task.fields[done]} · skipped {task.fields[skipped]}"
            " · failed {task.fields[failed]} · retries {task.fields[retries]}"
            " · running {task.fields[running]}"
        ),
        rich.progress.TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


async def watch(flow: AsyncFlow, console: rich.console.Console, run: Callable[[], Any]) -> None:
    """Run ``run()`` while the flow's events feed a progress bar."""
    stream = flow.events()
    with progress_bar(console) as progress:
        tracker = RunProgress(progress, len(flow.task.queue))

        async def consume() -> None:
            async for event in stream:
                tracker.handle(event)

        error: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            try:
                await run()
                await flow.wait()
            except Exception as exc:  # raised as is, not in an ExceptionGroup
                error = exc
            finally:
                stream.close()
        if error is not None:
            raise error


def summary(flow: AsyncFlow, console: rich.console.Console, elapsed: float) -> None:
    """The tasks as a table that fits 80 columns; errors as whole lines below it."""
    table = new_table(
        "#", "step", "key", "status", "tries", "duration", title=f"workflow {flow.workflow_id}"
    )
    interrupted = []
    for task in flow.task.queue:
        outcome = task.outcome
        if outcome == "cancelled":
            interrupted.append(task.key)
        table.add_row(
            str(task.task_id),
            task.name,
            task.key,
            rich.text.Text(outcome, style=STYLES[outcome]),
            str(task.attempts) if task.attempts else "-",
            seconds(task.duration) if outcome in ("completed", "failed") else "-",
        )
    console.print(table)
    for task in flow.task.queue:
        if task.error is not None:
            console.print(
                f"{task.name} (key {task.key}) failed after {task.attempts} attempt(s):"
                f" {type(task.error).__name__}: {task.error}",
                markup=False,
            )
    if interrupted:
        console.print(f"interrupted in: {', '.join(interrupted)}", markup=False)
    status = flow.status
    line = rich.text.Text(f"workflow {flow.workflow_id}: ")
    line.append(status, style=STYLES.get(status, ""))
    line.append(f" in {elapsed:.2f}s")
    if flow.run_id:
        line.append(f" (run {flow.run_id})")
    console.print(line)


_RUN_OPTIONS = {
    "workflow_id": "--workflow-id",
    "resume": "--resume",
    "mode": "--mode",
    "storage_url": "--storage",
    "keep_going": "--keep-going",
    "park": "--park",
    "max_concurrency": "--max-concurrency",
    "rerun_from": "--from",
}


async def _cancel_on_sigterm(flow: AsyncFlow, run: Callable[[], Awaitable[None]]) -> None:
    """Run ``run()``; SIGTERM cancels the flow as Ctrl-C does, so run.json says ``cancelled``."""
    failure: list[BaseException] = []
    async with anyio.create_task_group() as group:

        async def listen() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as received:
                async for _ in received:
                    click.echo("SIGTERM: cancelling the run", err=True)
                    flow.cancel()
                    return

        group.start_soon(listen)
        try:
            await run()
        except Exception as exc:
            failure.append(exc)
        finally:
            group.cancel_scope.cancel()
    if failure:
        raise failure[0]


@cli.command()
@click.argument("target", metavar="FILE.py[:ATTR]")
@click.option("--workflow-id", help="Run under this workflow id instead of the flow's.")
@click.option("--resume", is_flag=True, help="Skip the steps that have a checkpoint.")
@click.option(
    "--mode",
    type=SuggestingChoice(list(get_args(Mode))),
    help="Default: graph for a flow with depends_on or task.map, else sequential.",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="At most N tasks at once (parallel modes). Default: no bound.",
)
@click.option(
    "--from",
    "rerun_from",
    metavar="KEY",
    help="Resume, but re-run task KEY and every task that depends on it.",
)
@storage_option
@click.option("--keep-going", is_flag=True, help="Carry on after a failed step.")
@click.option(
    "--park",
    is_flag=True,
    help="End with status 'waiting' at a durable wait that is not due (a worker resumes it).",
)
@debug_option
def run(
    target: str,
    workflow_id: str | None,
    resume: bool,
    mode: str | None,
    max_concurrency: int | None,
    rerun_from: str | None,
    storage_url: str | None,
    keep_going: bool,
    park: bool,
    debug: bool,
) -> int:
    """Run a flow from FILE.py.

    ATTR names an AsyncFlow or a function (sync or async) returning one.
    Without ATTR: the module's only module-level AsyncFlow, else its main().
    A function that already ran the flow itself is reported, not re-run.
    """
    out = console()
    err = console(stderr=True)
    given = {name for name, value in locals().items() if name in _RUN_OPTIONS and value}
    with reporting(debug):
        path, attr = split_target(target)
        if workflow_id is not None:
            workflow_id = validated_id(workflow_id)
        storage_url = storage_url or os.environ.get(STORAGE_ENV)  # replaces the flow's own
        storage = storage_from_url(storage_url) if storage_url else None
        module = load_module(path)
        found = find_target(module, path, attr)
        what = f"{path}:{attr or getattr(found, '__name__', 'flow')}"
        flow: AsyncFlow | None = None
        factory: Callable[[], Awaitable[Any]] | None = None
        if isinstance(found, AsyncFlow):
            flow = found
        elif callable(found):
            if inspect.iscoroutinefunction(found):
                factory = found
            else:
                made = found()  # outside the loop: it may call anyio.run itself
                if inspect.isawaitable(made):

                    async def awaited(made: Any = made) -> Any:
                        return await made

                    factory = awaited
                else:
                    flow = check_flow(made, f"{what}()")
        else:
            check_flow(found, what)
        started = time.perf_counter()

        async def body() -> AsyncFlow:
            if flow is not None:
                chosen = flow
            else:
                assert factory is not None
                chosen = check_flow(await factory(), f"{what}()")
            try:
                if chosen.status == "new":
                    if storage is not None or workflow_id is not None:
                        chosen = rebuild(chosen, storage, workflow_id)

                    async def start() -> None:
                        await chosen.start(
                            mode=cast(Mode, mode) if mode else None,  # None: start() infers
                            resume=resume or rerun_from is not None,
                            keep_going=keep_going,
                            on_wait="park" if park else "block",
                            max_concurrency=max_concurrency,
                            rerun_from=rerun_from,
                        )

                    async def start_cancellable() -> None:
                        await _cancel_on_sigterm(chosen, start)

                    await watch(chosen, err, start_cancellable)
                else:
                    ignored = ", ".join(_RUN_OPTIONS[name] for name in sorted(given))
                    note = f"{what} ran the flow itself; showing its result"
                    if ignored:
                        note += f" ({ignored} not applied)"
                    click.echo(f"note: {note}", err=True)
                    if chosen.status == "running":

                        async def nothing() -> None:
                            pass

                        await watch(chosen, err, nothing)
            finally:
                if storage is not None:
                    await storage.aclose()
            return chosen

        done = anyio.run(body)
        summary(done, out, time.perf_counter() - started)
    return EXIT_OK if done.status in ("completed", "waiting") else EXIT_FAILED
