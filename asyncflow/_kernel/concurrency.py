"""Structured concurrency that raises the first error itself, not an ExceptionGroup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import anyio
import anyio.lowlevel

from asyncflow._kernel.errors import ConfigurationError

__all__ = ["require_asyncio", "run_all", "run_beside"]


def require_asyncio(what: str) -> asyncio.AbstractEventLoop:
    """The running asyncio loop, or a ``ConfigurationError`` saying ``what`` needs one.

    The cloud SDKs and dask.distributed are built on asyncio/aiohttp; under
    trio they would fail deep inside the SDK with an unrelated error.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigurationError(
            f"{what} runs on asyncio only and was called outside an asyncio event loop"
            " (under trio?); use anyio's asyncio backend"
        ) from None


async def run_all(
    jobs: Iterable[Callable[[], Awaitable[object]]], *, yield_every: int | None = None
) -> None:
    """Run jobs in one task group; the first error cancels the rest and is raised as-is.

    anyio would wrap it in an ExceptionGroup, but callers of ``start`` expect
    the ``StorageError`` or ``CheckpointCorrupt`` itself.

    With ``yield_every``, the loop gets a turn after that many jobs are
    started, and ``jobs`` is only drawn from then: jobs that finish without
    suspending are gone before the next ones exist, so a lazily generated
    ``jobs`` of 100 000 costs memory for the jobs actually in flight.
    """
    failure: list[BaseException] = []

    async def guarded(job: Callable[[], Awaitable[object]]) -> None:
        try:
            await job()
        except Exception as exc:
            if not failure:
                failure.append(exc)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for started, job in enumerate(jobs, 1):
            group.start_soon(guarded, job)
            if yield_every is not None and started % yield_every == 0:
                await anyio.lowlevel.checkpoint()
    if failure:
        raise failure[0]


async def run_beside(
    body: Callable[[], Awaitable[object]],
    companion: Callable[[anyio.CancelScope], Coroutine[Any, Any, object]],
) -> None:
    """Run ``body`` with ``companion`` beside it until ``body`` ends; raise its error as-is.

    The companion (a lease heartbeat, a progress writer) gets the group's
    cancel scope, so it can stop the body too; it is cancelled when the body
    returns or raises.
    """
    failure: list[BaseException] = []
    async with anyio.create_task_group() as group:

        async def guarded() -> None:
            try:
                await body()
            except Exception as exc:
                failure.append(exc)
            finally:
                group.cancel_scope.cancel()

        group.start_soon(guarded)
        group.start_soon(companion, group.cancel_scope)
    if failure:
        raise failure[0]
