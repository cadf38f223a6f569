"""Typed events of a run, delivered by ``flow.events()``.

Every event is a frozen, slotted dataclass carrying ``workflow_id`` and the
wall-clock ``time`` it happened. Task events also carry ``task_id``,
``key`` and ``step`` (the step's qualified name).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field

__all__ = [
    "CheckpointWritten",
    "Event",
    "EventsDropped",
    "TaskCompleted",
    "TaskEvent",
    "TaskFailed",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskWaiting",
    "WorkflowFinished",
    "WorkflowStarted",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all events."""

    workflow_id: str
    time: float = field(default_factory=_time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowStarted(Event):
    mode: str
    resume: bool
    tasks: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowFinished(Event):
    """``status`` is ``"completed"``, ``"failed"``, ``"cancelled"`` or ``"waiting"`` (parked)."""

    status: str
    duration: float
    completed: int
    skipped: int
    failed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent(Event):
    task_id: int
    key: str
    step: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(TaskEvent):
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSkipped(TaskEvent):
    """The task did not run; ``reason`` says why: ``"checkpoint"`` (restored from it) or
    ``"upstream failed"`` (graph mode: a task it depends on failed)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRetrying(TaskEvent):
    attempt: int
    error: str
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompleted(TaskEvent):
    attempts: int
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(TaskEvent):
    attempts: int
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskWaiting(TaskEvent):
    """A wait step is not due: it blocks (``parked`` false) or parks the run.

    ``wait`` is ``"sleep"`` (``wake_at``) or ``"signal"`` (``signal``, and
    ``deadline`` if it has a timeout); times are UTC epoch seconds.
    """

    wait: str
    signal: str | None
    wake_at: float | None
    deadline: float | None
    parked: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointWritten(TaskEvent):
    storage_key: str
    size: int
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsDropped(Event):
    """This subscriber fell behind and ``count`` older events were dropped for it."""

    count: int
