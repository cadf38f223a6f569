"""Structured concurrency that raises the first error itself, not an ExceptionGroup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import anyio

__all__ = ["run_all"]


async def run_all(jobs: Iterable[Callable[[], Awaitable[None]]]) -> None:
    """Run jobs in one task group; the first error cancels the rest and is raised as-is.

    anyio would wrap it in an ExceptionGroup, but callers of ``start`` expect
    the ``StorageError`` or ``CheckpointCorrupt`` itself.
    """
    failure: list[BaseException] = []

    async def guarded(job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception as exc:
            if not failure:
                failure.append(exc)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(guarded, job)
    if failure:
        raise failure[0]
