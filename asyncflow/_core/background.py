"""A run detached from the caller, on the caller's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio

from asyncflow._core.loud import log_loudly

__all__ = ["Detached"]


class Detached:
    """Runs ``job`` as a task of the running loop that nobody has to await.

    asyncio gets a plain ``Task`` (kept referenced here so it is not garbage
    collected); trio gets a system task, its only unstructured spawn. The
    job's exception is kept for ``wait()``; if nobody is waiting when it
    fails it is also logged at once (on stderr without logging set up), so
    a ``WorkflowLocked`` refusal is seen when it happens, not at shutdown.
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
            if not self._waiters:  # at once, on stderr if logging is not set up
                log_loudly(
                    "asyncflow: background run %s failed: %s: %s (await flow.wait() raises it)",
                    self._label,
                    type(exc).__name__,
                    exc,
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
