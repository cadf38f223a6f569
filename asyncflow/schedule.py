"""Cron scheduling: ``await flow.schedule(cron="*/5 * * * *", overlap="skip")``.

Needs the ``scheduler`` extra (croniter). See docs/scheduling.md.
"""

from asyncflow._core.schedule import (
    Clock,
    ManualClock,
    Overlap,
    ScheduledRun,
    Scheduler,
    Tick,
    WallClock,
    clone_flow,
)
from asyncflow._kernel.public import publish

__all__ = [
    "Clock",
    "ManualClock",
    "Overlap",
    "ScheduledRun",
    "Scheduler",
    "Tick",
    "WallClock",
    "clone_flow",
]

publish(__name__, globals())
