"""A run detached from the caller, on the caller's event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["Detached"]

logger = logging.getLogger("asyncflow")


class Detached:
    """Runs ``job`` as a task of the running loop that nobody has to await.

    asyncio gets a plain ``Task`` (kept referenced here so it is not garbage
    collected); trio gets a system task, its only unstructured spawn. The
    job's exception is kept for ``wait()``; if nobody is waiting when it
    fails it is also logged, so it is never lost.
    """

    def __init__(self, job: Callable[[], Awaitable[None]], label: str) -> None:
        self._job = job
        self._label = label
        self._done = anyio.Event()
        self._waiters = 0
        self.error: BaseException | None = None
        self._handle: object = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import trio

            trio.lowlevel.spawn_system_task(self._main, name=f"asyncflow:{label}")
        else:
            self._handle = loop.create_task(self._main(), name=f"asyncflow:{label}")

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def _main(self) -> None:
        try:
            await self._job()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            self.error = exc
            if not self._waiters:
                logger.error(
                    "background run %s failed; await flow.wait() to get the error",
                    self._label,
                    exc_info=exc,
                )
            if not isinstance(exc, Exception):
                raise
        finally:
            self._done.set()

    async def wait(self) -> None:
        """Wait for the job; raise its error if it failed."""
        self._waiters += 1
        try:
            await self._done.wait()
        finally:
            self._waiters -= 1
        if self.error is not None:
            raise self.error
