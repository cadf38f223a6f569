"""The ``asyncflow`` command: run a flow with a progress bar, inspect or clear a workflow.

::

    asyncflow run FILE.py[:ATTR] [--workflow-id ID] [--resume] [--mode M] [--storage URL]
                                 [--keep-going] [--debug]
    asyncflow status ID [--storage URL] [--format table|json|mermaid]
    asyncflow clear ID [--storage URL] [--yes] [--force]

Exit codes: 0 success (the run completed), 1 the run failed or was cancelled,
or the command could not do its job (workflow not found, locked, storage
error), 2 a usage or configuration error. Every error is one line on stderr
(``error: ...``); ``--debug`` adds the traceback. See ``docs/cli.md``.

Needs the ``cli`` extra (click and rich); the core package never imports it.
"""

from __future__ import annotations

try:
    import click
    import rich.console
    import rich.progress
    import rich.table
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        f"the asyncflow command line needs its extra ({exc.name} is missing):"
        " pip install 'asyncflow[cli]'"
    ) from exc

import dataclasses
import datetime as dt
import importlib.util
import inspect
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, cast

import anyio

from asyncflow import events
from asyncflow._core.checkpoint import clear_workflow
from asyncflow._core.errors import ConfigurationError
from asyncflow._core.flow import AsyncFlow, Mode
from asyncflow._core.ids import validate_id
from asyncflow._core.lease import Lease, lease_key
from asyncflow._core.modes import MODES
from asyncflow._core.status import LeaseState, RunState, read_run, task_outcome
from asyncflow._core.storage import Storage
from asyncflow.mermaid import run_mermaid
from asyncflow.providers import storage_from_url

__all__ = ["cli", "main"]

DEFAULT_STORAGE = "file://.asyncflow"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_STYLES = {
    "completed": "green",
    "failed": "red",
    "skipped": "bright_black",
    "cancelled": "yellow",
    "not run": "bright_black",
    "running": "cyan",
}


class CliError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    from asyncflow._core.errors import AsyncflowError

    if isinstance(exc, (AsyncflowError, CliError)):
        return _one_line(str(exc)) or type(exc).__name__
    text = _one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def _reporting(debug: bool) -> Iterator[None]:
    """Turn any exception into a ``CliError`` (one line); print the traceback with --debug."""
    try:
        yield
    except CliError:
        if debug:
            traceback.print_exc(file=sys.stderr)
        raise
    except Exception as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        code = EXIT_USAGE if isinstance(exc, ConfigurationError) else EXIT_FAILED
        raise CliError(_describe(exc), code) from exc


class _Group(click.Group):
    """A group whose errors, click's own included, are one ``error: ...`` line."""

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else EXIT_OK
        except CliError as exc:
            click.echo(f"error: {exc}", err=True)
            code = exc.code
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
            code = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"error: {_one_line(exc.format_message())}", err=True)
            code = exc.exit_code
        except click.Abort as exc:
            interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
            click.echo("error: interrupted" if interrupted else "error: aborted", err=True)
            code = 130 if interrupted else EXIT_FAILED
        if not standalone_mode:
            return code
        sys.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asyncflow", prog_name="asyncflow")
def cli() -> None:
    """Run asyncflow workflows and inspect their checkpoints."""


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point: ``asyncflow ...``."""
    cli.main(args=argv, prog_name="asyncflow")
    raise AssertionError("unreachable")  # pragma: no cover


_storage_option = click.option(
    "--storage",
    "storage_url",
    metavar="URL",
    help="file://PATH, memory://, s3://bucket/prefix or gs://bucket/prefix.",
)
_debug_option = click.option("--debug", is_flag=True, help="Show tracebacks.")


def _storage(url: str | None) -> Storage:
    return storage_from_url(url or DEFAULT_STORAGE)


def _workflow_id(value: str) -> str:
    try:
        return validate_id(value, "workflow id")
    except ConfigurationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


# ---------------------------------------------------------------- run


def _split_target(target: str) -> tuple[Path, str | None]:
    """``FILE.py[:ATTR]``; a colon belongs to the path unless what follows is a name."""
    path, sep, attr = target.rpartition(":")
    if sep and path and all(part.isidentifier() for part in attr.split(".")):
        return Path(path), attr
    return Path(target), None


def _load_module(path: Path) -> ModuleType:
    """Import ``path`` under its stem (not ``__main__``), with its folder on ``sys.path``."""
    if not path.is_file():
        raise CliError(f"no such file: {path}", EXIT_USAGE)
    name = path.stem if path.stem.isidentifier() else "asyncflow_cli_target"
    if name in sys.modules:
        name = f"asyncflow_cli_{name}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot import {path}: not a Python file", EXIT_USAGE)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise CliError(f"importing {path} failed: {_describe(exc)}", EXIT_USAGE) from exc
    return module


def _find_target(module: ModuleType, path: Path, attr: str | None) -> object:
    """ATTR, else the module's only ``AsyncFlow``, else its ``main``."""
    if attr is not None:
        value: object = module
        for part in attr.split("."):
            if not hasattr(value, part):
                raise CliError(f"{path} has no attribute {attr!r}", EXIT_USAGE)
            value = getattr(value, part)
        return value
    flows = [name for name, value in vars(module).items() if isinstance(value, AsyncFlow)]
    if len(flows) == 1:
        return getattr(module, flows[0])
    if len(flows) > 1:
        raise CliError(
            f"{path} defines several flows ({', '.join(flows)}); name one: {path}:{flows[0]}",
            EXIT_USAGE,
        )
    if callable(getattr(module, "main", None)):
        return module.main
    raise CliError(
        f"{path} defines no AsyncFlow and no main(); name a flow or a function returning one:"
        f" {path}:ATTR",
        EXIT_USAGE,
    )


def _check_flow(value: object, what: str) -> AsyncFlow:
    if not isinstance(value, AsyncFlow):
        raise CliError(f"{what} is not an AsyncFlow (got {type(value).__name__})", EXIT_USAGE)
    return value


def _rebuild(flow: AsyncFlow, storage: Storage | None, workflow_id: str | None) -> AsyncFlow:
    """The same tasks in a new ``AsyncFlow`` with another storage and/or workflow id."""
    config = dataclasses.replace(flow.config, storage=storage) if storage else flow.config
    if workflow_id is None and flow.fixed_id:
        workflow_id = flow.workflow_id
    new = AsyncFlow(config=config, workflow_id=workflow_id)
    for task in flow.task.queue:
        new.task.add(
            step=task.step,
            callback=task.callback,
            initial_context=task.initial_context,
            group_name=task.group_name,
            key=task.key,
        )
    return new


class RunProgress:
    """Counts of a run fed by its events, shown as a rich progress bar."""

    def __init__(self, progress: rich.progress.Progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = self.skipped = self.failed = self.retries = 0
        self.task_id = progress.add_task("starting", total=total or None, **self._fields())

    def _fields(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "retries": self.retries,
        }

    def handle(self, event: events.Event) -> None:
        description: str | None = None
        advance = 0
        if isinstance(event, events.WorkflowStarted):
            self.total = event.tasks
            self.progress.update(self.task_id, total=event.tasks or None)
        elif isinstance(event, events.TaskStarted):
            description = event.step if event.attempt == 1 else f"{event.step} #{event.attempt}"
        elif isinstance(event, events.TaskCompleted):
            self.done += 1
            advance = 1
        elif isinstance(event, events.TaskSkipped):
            self.skipped += 1
            advance = 1
            description = f"{event.step} (restored)"
        elif isinstance(event, events.TaskFailed):
            self.failed += 1
            advance = 1
            description = f"{event.step} failed"
        elif isinstance(event, events.TaskRetrying):
            self.retries += 1
            description = f"{event.step} retrying"
        elif isinstance(event, events.WorkflowFinished):
            description = event.status
        self.progress.update(
            self.task_id, advance=advance, description=description, **self._fields()
        )


def _progress_bar(console: rich.console.Console) -> rich.progress.Progress:
    return rich.progress.Progress(
        rich.progress.SpinnerColumn(),
        rich.progress.TextColumn("{task.description:<24}"),
        rich.progress.BarColumn(),
        rich.progress.MofNCompleteColumn(),
        rich.progress.TextColumn(
            "done {task.fields[done]} · skipped {task.fields[skipped]}"
            " · failed {task.fields[failed]} · retries {task.fields[retries]}"
        ),
        rich.progress.TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


async def _watch(flow: AsyncFlow, console: rich.console.Console, run: Callable[[], Any]) -> None:
    """Run ``run()`` while the flow's events feed a progress bar."""
    stream = flow.events()
    with _progress_bar(console) as progress:
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


def _summary(flow: AsyncFlow, console: rich.console.Console, elapsed: float) -> None:
    table = rich.table.Table(title=f"workflow {flow.workflow_id}", title_justify="left")
    for column in ("#", "step", "key", "status", "attempts", "duration", "error"):
        table.add_column(column, no_wrap=column != "error")
    for task in flow.task.queue:
        outcome = task_outcome(task)
        table.add_row(
            str(task.task_id),
            task.name,
            task.key,
            f"[{_STYLES[outcome]}]{outcome}[/]",
            str(task.attempts) if task.attempts else "-",
            _seconds(task.duration) if outcome in ("completed", "failed") else "-",
            repr(task.error) if task.error is not None else "",
        )
    console.print(table)
    status = flow.status
    style = _STYLES.get(status, "")
    console.print(f"workflow {flow.workflow_id}: [{style}]{status}[/] in {elapsed:.2f}s")


_RUN_OPTIONS = {
    "workflow_id": "--workflow-id",
    "resume": "--resume",
    "mode": "--mode",
    "storage_url": "--storage",
    "keep_going": "--keep-going",
}


@cli.command()
@click.argument("target", metavar="FILE.py[:ATTR]")
@click.option("--workflow-id", help="Run under this workflow id instead of the flow's.")
@click.option("--resume", is_flag=True, help="Skip the steps that have a checkpoint.")
@click.option("--mode", type=click.Choice(list(MODES)), help="Default: sequential.")
@_storage_option
@click.option("--keep-going", is_flag=True, help="Carry on after a failed step.")
@_debug_option
def run(
    target: str,
    workflow_id: str | None,
    resume: bool,
    mode: str | None,
    storage_url: str | None,
    keep_going: bool,
    debug: bool,
) -> int:
    """Run a flow from FILE.py.

    ATTR names an AsyncFlow or a function (sync or async) returning one.
    Without ATTR: the module's only module-level AsyncFlow, else its main().
    A function that already ran the flow itself is reported, not re-run.
    """
    out = rich.console.Console()
    err = rich.console.Console(stderr=True)
    given = {name for name, value in locals().items() if name in _RUN_OPTIONS and value}
    with _reporting(debug):
        path, attr = _split_target(target)
        if workflow_id is not None:
            workflow_id = _workflow_id(workflow_id)
        storage = storage_from_url(storage_url) if storage_url else None
        module = _load_module(path)
        found = _find_target(module, path, attr)
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
                    flow = _check_flow(made, f"{what}()")
        else:
            _check_flow(found, what)
        started = time.perf_counter()

        async def body() -> AsyncFlow:
            if flow is not None:
                chosen = flow
            else:
                assert factory is not None
                chosen = _check_flow(await factory(), f"{what}()")
            try:
                if chosen.status == "new":
                    if storage is not None or workflow_id is not None:
                        chosen = _rebuild(chosen, storage, workflow_id)

                    async def start() -> None:
                        await chosen.start(
                            mode=cast(Mode, mode or "sequential"),
                            resume=resume,
                            keep_going=keep_going,
                        )

                    await _watch(chosen, err, start)
                else:
                    ignored = ", ".join(_RUN_OPTIONS[name] for name in sorted(given))
                    note = f"{what} ran the flow itself; showing its result"
                    if ignored:
                        note += f" ({ignored} not applied)"
                    click.echo(f"note: {note}", err=True)
                    if chosen.status == "running":

                        async def nothing() -> None:
                            pass

                        await _watch(chosen, err, nothing)
            finally:
                if storage is not None:
                    await storage.aclose()
            return chosen

        done = anyio.run(body)
        _summary(done, out, time.perf_counter() - started)
    return EXIT_OK if done.status == "completed" else EXIT_FAILED


# ---------------------------------------------------------------- status


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
    return f"live: {who}, until {_when(lease.expires_at)} unless renewed"


def _status_table(state: RunState, console: rich.console.Console) -> None:
    style = _STYLES.get(state.status, "")
    console.print(
        f"workflow [bold]{state.workflow_id}[/]: [{style}]{state.status}[/]"
        f"  mode {state.mode or '-'}  updated {_when(state.updated_at)}",
        highlight=False,
    )
    console.print(f"lease: {_lease_text(state.lease)}", highlight=False)
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
            f"[{_STYLES[task.status]}]{task.status}[/]",
            "-" if task.attempts is None else str(task.attempts),
            _seconds(task.duration),
            _when(task.finished_at)[11:],
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
@_storage_option
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "mermaid"]),
    default="table",
    show_default=True,
)
@_debug_option
def status(workflow_id: str, storage_url: str | None, output: str, debug: bool) -> int:
    """Show a workflow's latest run, read from storage (nothing is run)."""
    with _reporting(debug):
        workflow_id = _workflow_id(workflow_id)
        storage = _storage(storage_url)

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


# ---------------------------------------------------------------- clear


@cli.command()
@click.argument("workflow_id", metavar="[ID]", required=False)
@_storage_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Clear even while a runner holds the lease.")
@click.option(
    "--older-than",
    metavar="AGE",
    help="Instead of ID: every finished workflow not updated for AGE (7d, 12h, 30m).",
)
@click.option("--include-interrupted", is_flag=True, help="With --older-than: also crashed runs.")
@click.option("--dry-run", is_flag=True, help="With --older-than: list, delete nothing.")
@_debug_option
def clear(
    workflow_id: str | None,
    storage_url: str | None,
    yes: bool,
    force: bool,
    older_than: str | None,
    include_interrupted: bool,
    dry_run: bool,
    debug: bool,
) -> int:
    """Delete a workflow's run manifest and checkpoints.

    Takes the workflow's lease first, so no runner can start meanwhile; a live
    lease makes it refuse unless --force. With --older-than instead of ID:
    every workflow whose run ended before that age (never one with a live lease).
    """
    if older_than is not None or workflow_id is None:
        from asyncflow._cli_retention import clear_older

        return clear_older(
            workflow_id, storage_url, yes, force, older_than, include_interrupted, dry_run, debug
        )
    if include_interrupted or dry_run:
        raise CliError("--include-interrupted and --dry-run go with --older-than", EXIT_USAGE)
    with _reporting(debug):
        workflow_id = _workflow_id(workflow_id)
        storage = _storage(storage_url)
        where = storage_url or DEFAULT_STORAGE

        async def count() -> list[str]:
            return [name async for name in storage.list(f"{workflow_id}/")]

        async def delete() -> int:
            if not force:  # hold the lease: no runner can start while we delete
                await Lease(storage, workflow_id, ttl=60.0, renew_every=20.0).acquire()
            deleted = await clear_workflow(storage, workflow_id)
            # Ours, or (--force) a runner's, which then fails its next renewal.
            await storage.delete(lease_key(workflow_id))
            return deleted

        async def main() -> int:
            try:
                names = await count()
                if not names:
                    return -1
                if not yes:
                    records = len([n for n in names if n != lease_key(workflow_id)])
                    question = f"Delete {records} record(s) of workflow {workflow_id} in {where}?"
                    confirmed = await anyio.to_thread.run_sync(
                        lambda: click.confirm(question, default=False, err=True)
                    )
                    if not confirmed:
                        raise CliError("not confirmed; nothing deleted", EXIT_FAILED)
                return await delete()
            finally:
                await storage.aclose()

        deleted = anyio.run(main)
        if deleted < 0:
            click.echo(f"workflow {workflow_id} has no records in {where}; nothing to clear")
        else:
            click.echo(f"workflow {workflow_id}: deleted {deleted} record(s) from {where}")
    return EXIT_OK


# ---------------------------------------------------------------- schedule

from asyncflow import _cli_schedule  # noqa: E402, F401  (registers `asyncflow schedule`)
