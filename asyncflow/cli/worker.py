"""``asyncflow worker``: resume the parked runs of a flow when they are due."""

from __future__ import annotations

import inspect
import logging
import signal as signals
import sys
from typing import Any

import anyio
import click

from asyncflow import AsyncFlow, Worker
from asyncflow.cli._app import cli
from asyncflow.cli._common import EXIT_OK, EXIT_USAGE, CliError, debug_option, reporting
from asyncflow.cli._target import check_flow, find_target, load_module, split_target
from asyncflow.providers import storage_from_url

__all__ = ["worker"]


def _takes_an_id(func: Any) -> bool:
    try:
        return len(inspect.signature(func).parameters) >= 1
    except (TypeError, ValueError):
        return False


async def _serve(worker: Worker, grace: float) -> None:
    """Run until SIGINT/SIGTERM: then start nothing new, give in-flight runs ``grace`` seconds.

    A second signal (or the end of the grace period) cancels them; their
    waits stay armed and their runs resumable.
    """
    async with anyio.create_task_group() as group:

        async def stopper() -> None:
            with anyio.open_signal_receiver(signals.SIGINT, signals.SIGTERM) as received:
                count = 0
                async for signum in received:
                    count += 1
                    if count == 1:
                        click.echo(
                            f"worker: {signals.Signals(signum).name}: finishing the runs in"
                            f" flight (up to {grace:g}s; again to cancel them)",
                            err=True,
                        )
                        worker.stop()

                        async def deadline() -> None:
                            await anyio.sleep(grace)
                            worker.cancel()

                        group.start_soon(deadline)
                    else:
                        worker.cancel()

        async def serve() -> None:
            await worker.run()
            group.cancel_scope.cancel()

        group.start_soon(stopper)
        group.start_soon(serve)


@cli.command()
@click.argument("target", metavar="FILE.py[:ATTR]")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--prefix", default="", help="Only workflows whose id starts with this.")
@click.option(
    "--poll",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds between scans.",
)
@click.option("--once", is_flag=True, help="Scan once, resume what is due, and exit.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGINT/SIGTERM, seconds to let in-flight runs finish before cancelling them.",
)
@click.option(
    "--storage",
    "storage_url",
    metavar="URL",
    help="Default: the flow's own storage.",
)
@debug_option
def worker(
    target: str,
    concurrency: int,
    prefix: str,
    poll: float,
    once: bool,
    grace: float,
    storage_url: str | None,
    debug: bool,
) -> int:
    """Resume the parked runs of the flow in FILE.py when they are due.

    ATTR names an AsyncFlow (each run is a copy of it under the run's id), a
    function taking a workflow id and returning that run's AsyncFlow, or a
    function without arguments returning the AsyncFlow to copy.
    """
    with reporting(debug):
        path, attr = split_target(target)
        module = load_module(path)
        found = find_target(module, path, attr)
        what = f"{path}:{attr or getattr(found, '__name__', 'flow')}"
        source: Any
        if isinstance(found, AsyncFlow) or (callable(found) and _takes_an_id(found)):
            source = found
        elif callable(found):
            made = found()
            if inspect.isawaitable(made):

                async def await_it(made: Any = made) -> Any:
                    return await made

                made = anyio.run(await_it)
            source = check_flow(made, f"{what}()")
        else:
            raise CliError(f"{what} is not an AsyncFlow or a function", EXIT_USAGE)
        storage = storage_from_url(storage_url) if storage_url else None
        if storage is None and not isinstance(source, AsyncFlow):
            raise CliError(f"{what} is a function of the workflow id: pass --storage", EXIT_USAGE)
        runner = Worker(
            source, storage=storage, prefix=prefix, concurrency=concurrency, poll_interval=poll
        )
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("worker: %(message)s"))
        log = logging.getLogger("asyncflow")
        log.addHandler(handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)

        async def main() -> list[str]:
            try:
                if once:
                    return await runner.run_once()
                await _serve(runner, grace)
                return runner.resumed
            finally:
                await runner.storage.aclose()

        try:
            resumed = anyio.run(main)
        finally:
            log.removeHandler(handler)
        click.echo(f"resumed {len(resumed)} run(s)" + (": " + " ".join(resumed) if resumed else ""))
    return EXIT_OK
