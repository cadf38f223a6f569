"""The words storage uses for what happened to a task in a run.

``run.json``'s ``outcomes``, run summaries, the progress index, ``asyncflow
status`` and the viewer all use these; ``Task.outcome`` maps a task's
``TaskStatus`` (Dotflow's values) onto them. ``skipped`` means restored
from a checkpoint.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["OUTCOMES", "Outcome"]

Outcome = Literal["completed", "skipped", "failed", "cancelled", "not run", "waiting"]
OUTCOMES: tuple[Outcome, ...] = (
    "completed",
    "skipped",
    "failed",
    "cancelled",
    "not run",
    "waiting",
)
