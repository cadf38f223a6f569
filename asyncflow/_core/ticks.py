"""What a schedule did: the record of each cron tick and of each run it started.

Kept apart from the scheduler loop so that callers (``on_tick``, the CLI,
tests) can read them without the loop's internals; ``Scheduler.ticks`` and
``Scheduler.runs`` hold the latest of them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from asyncflow._core.flow import AsyncFlow

__all__ = ["ScheduledRun", "Tick"]


@dataclass(frozen=True, slots=True)
class Tick:
    """What the scheduler did at one cron tick.

    ``action`` is ``"run"`` (a run started), ``"queue"`` (it waits for the
    active run), ``"skip"`` (dropped; ``reason`` says why).
    """

    at: dt.datetime
    action: Literal["run", "queue", "skip"]
    workflow_id: str | None = None
    reason: str = ""


@dataclass(slots=True)
class ScheduledRun:
    """One run started by the scheduler.

    ``status``: ``"pending"`` (reading the manifest), ``"running"``, then the
    flow's ``"completed"``, ``"failed"`` or ``"cancelled"``; ``"locked"`` if
    another process held the workflow's lease (the run did not start);
    ``"done"`` if, with ``overlap="parallel"``, this tick's own workflow had
    already completed (another scheduler ran it; not run again); or
    ``"error"`` if the run raised (``error`` holds it).
    """

    tick: dt.datetime
    workflow_id: str
    resumed: bool = False
    status: str = "pending"
    flow: AsyncFlow | None = None
    error: BaseException | None = field(default=None, repr=False)
