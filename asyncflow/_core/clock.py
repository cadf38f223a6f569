"""Where time comes from: the ``Clock`` protocol, the wall clock, and a manual one for tests.

Scheduling, durable waits and the worker all wait for a moment in time;
reading it through one small protocol lets a test drive any of them tick
by tick (``ManualClock``) instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

import anyio

from asyncflow._kernel.errors import ConfigurationError

__all__ = ["Clock", "ManualClock", "WallClock"]

_UTC = dt.timezone.utc


@runtime_checkable
class Clock(Protocol):
    """Where the scheduler reads the time and waits for the next tick."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...

    async def sleep_until(self, when: dt.datetime) -> None:
        """Return once ``now() >= when`` (at once if it already is)."""
        ...


class WallClock:
    """The real time (``datetime.now(UTC)``), waited for with ``anyio.sleep``.

    Sleeps at most ``recheck`` seconds at a time and re-reads the wall clock,
    so a clock change or a suspended machine delays a tick by at most that.
    """

    def __init__(self, recheck: float = 30.0) -> None:
        self.recheck = recheck

    def now(self) -> dt.datetime:
        return dt.datetime.now(_UTC)

    async def sleep_until(self, when: dt.datetime) -> None:
        while True:
            delay = (when - self.now()).total_seconds()
            if delay <= 0:
                return
            await anyio.sleep(min(delay, self.recheck))


class ManualClock:
    """A clock that moves only when told: tests drive a schedule tick by tick.

    ``await clock.advance(minutes=1)`` moves the time, wakes every sleeper
    that is due and returns once each woken sleeper is asleep again on this
    clock (so the scheduler has handled the tick), or after ``settle``
    event-loop turns.
    """

    def __init__(self, start: dt.datetime, *, settle: int = 1000) -> None:
        if start.tzinfo is None:
            raise ConfigurationError("ManualClock needs a timezone-aware start time")
        self._now = start
        self._sleepers: list[tuple[dt.datetime, anyio.Event]] = []
        self._settle = settle

    def now(self) -> dt.datetime:
        return self._now

    async def sleep_until(self, when: dt.datetime) -> None:
        while self._now < when:
            wakeup = anyio.Event()
            entry = (when, wakeup)
            self._sleepers.append(entry)
            try:
                await wakeup.wait()
            finally:
                if entry in self._sleepers:
                    self._sleepers.remove(entry)

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock."""
        return len(self._sleepers)

    async def set(self, when: dt.datetime) -> None:
        """Move the time to ``when`` (never backwards) and let the woken sleepers run."""
        if when < self._now:
            raise ValueError(f"ManualClock cannot go back from {self._now} to {when}")
        self._now = when
        due = [entry for entry in self._sleepers if entry[0] <= when]
        for entry in due:
            self._sleepers.remove(entry)
            entry[1].set()
        if not due:
            await anyio.lowlevel.checkpoint()
            return
        # done when every woken sleeper is asleep again (waiting past now)
        target = len(self._sleepers) + len(due)
        for _ in range(self._settle):
            await anyio.lowlevel.checkpoint()
            if sum(1 for entry in self._sleepers if entry[0] > self._now) >= target:
                break
        for _ in range(10):  # let the tasks the tick started reach their first await
            await anyio.lowlevel.checkpoint()

    async def advance(
        self,
        delta: dt.timedelta | None = None,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
    ) -> None:
        step = delta if delta is not None else dt.timedelta()
        step += dt.timedelta(seconds=seconds, minutes=minutes, hours=hours)
        await self.set(self._now + step)
