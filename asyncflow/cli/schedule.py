"""``asyncflow schedule``: run a flow at every cron tick until SIGINT/SIGTERM.

Registered on the ``asyncflow`` command group when ``asyncflow.cli`` is imported. See
docs/scheduling.md.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast, get_args

import anyio
import click

from asyncflow import AsyncFlow, ConfigurationError, Mode
from asyncflow.cli._app import cli
from asyncflow.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    STORAGE_ENV,
    CliError,
    debug_option,
    reporting,
    storage_option,
    validated_id,
)
from asyncflow.cli._target import check_flow, find_target, load_module, rebuild, split_target
from asyncflow.providers import storage_from_url

__all__ = ["schedule"]

_RUN_MODES = [mode for mode in get_args(Mode) if mode != "background"]


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _zone(name: str | None) -> dt.tzinfo | None:
    if name is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        message = f"unknown time zone {name!r} (an IANA name: Europe/Paris)"
        raise CliError(message, EXIT_USAGE) from None


@asynccontextmanager
async def _report(flow: AsyncFlow) -> AsyncIterator[None]:
    """Around each run: one line on stdout when it ends."""
    try:
        yield
    finally:
        outcomes = [task.outcome for task in flow.task.queue]
        counts = ", ".join(
            f"{outcomes.count(name)} {name}"
            for name in ("completed", "skipped", "failed")
            if outcomes.count(name)
        )
        ended = _stamp(dt.datetime.now(dt.timezone.utc))
        line = f"{ended} {flow.workflow_id}: {flow.status}"
        click.echo(line + (f" ({counts})" if counts else ""))


@cli.command()
@click.argument("target", metavar="FILE.py[:ATTR]")
@click.option("--cron", required=True, help='Cron expression, e.g. "*/5 * * * *" (6th field: s).')
@click.option(
    "--overlap",
    type=click.Choice(["skip", "queue", "parallel"]),
    default="skip",
    show_default=True,
    help="What a tick does while a run is active.",
)
@click.option(
    "--max-parallel", type=click.IntRange(min=1), default=4, show_default=True, metavar="N"
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Resume a run that did not complete instead of starting over.",
)
@click.option("--mode", type=click.Choice(_RUN_MODES), help="Default: sequential.")
@click.option("--workflow-id", help="Run under this workflow id instead of the flow's.")
@storage_option
@click.option("--keep-going", is_flag=True, help="Carry on after a failed step.")
@click.option("--tz", metavar="ZONE", help="Time zone the cron is read in. Default: UTC.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="On SIGINT/SIGTERM, cancel in-flight runs after this long."
    " Default: wait for them (a second signal cancels them).",
)
@debug_option
def schedule(
    target: str,
    cron: str,
    overlap: str,
    max_parallel: int,
    resume: bool,
    mode: str | None,
    workflow_id: str | None,
    storage_url: str | None,
    keep_going: bool,
    tz: str | None,
    grace: float | None,
    debug: bool,
) -> int:
    """Run a flow from FILE.py at every tick of --cron, until SIGINT/SIGTERM.

    FILE.py[:ATTR] is found as by `asyncflow run`; the flow must not have run
    yet. The first signal stops the ticks and waits for in-flight runs
    (--grace bounds the wait); a second one cancels them. Checkpoints stay.
    """
    from asyncflow.schedule import Scheduler, Tick

    with reporting(debug):
        path, attr = split_target(target)
        if workflow_id is not None:
            workflow_id = validated_id(workflow_id)
        zone = _zone(tz)
        storage_url = storage_url or os.environ.get(STORAGE_ENV)  # replaces the flow's own
        storage = storage_from_url(storage_url) if storage_url else None
        module = load_module(path)
        found = find_target(module, path, attr)
        what = f"{path}:{attr or getattr(found, '__name__', 'flow')}"
        made: Any = found
        if not isinstance(found, AsyncFlow) and callable(found):
            made = cast(Callable[[], Any], found)()  # outside the loop, as `run` does

        def on_tick(tick: Tick) -> None:
            if tick.action != "run":
                text = "queued" if tick.action == "queue" else f"skipped: {tick.reason}"
                click.echo(f"tick {_stamp(tick.at)}: {text}", err=True)

        async def body() -> None:
            flow = check_flow(await made if inspect.isawaitable(made) else made, what)
            if flow.status != "new":
                raise CliError(f"{what} ran the flow itself; expose it unstarted to schedule it")
            if storage is not None or workflow_id is not None:
                flow = rebuild(flow, storage, workflow_id)
            scheduler = Scheduler(
                flow,
                cron,
                overlap=overlap,  # type: ignore[arg-type]
                resume=resume,
                max_parallel=max_parallel,
                tz=zone,
                grace=grace,
                mode=mode or "sequential",
                keep_going=keep_going,
                around_run=_report,
                on_tick=on_tick,
            )
            click.echo(
                f"scheduling {flow.workflow_id}: {cron!r} ({tz or 'UTC'}), overlap {overlap};"
                f" next tick {_stamp(scheduler.next_tick())}; Ctrl-C stops",
                err=True,
            )

            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                    count = 0
                    async for signum in received:
                        count += 1
                        name = signal.Signals(signum).name
                        if count == 1:
                            running = len(scheduler.active)
                            wait = "" if not running else f"; waiting for {running} run(s)"
                            again = " (again cancels them)" if running else ""
                            click.echo(f"{name}: stopping{wait}{again}", err=True)
                            scheduler.stop()
                        else:
                            click.echo(f"{name}: cancelling the runs in flight", err=True)
                            scheduler.cancel_runs()

            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(signals)
                    await scheduler.run()
                    group.cancel_scope.cancel()
            finally:
                if storage is not None:
                    await storage.aclose()
            click.echo(f"stopped scheduling {flow.workflow_id}", err=True)

        try:
            anyio.run(body)
        except ImportError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
        except ConfigurationError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
    return EXIT_OK
