"""What the run pages render: frozen views of a run, its tasks and what it waits for.

Pages render these and never touch storage; the loaders (``_runs``,
``_history``) build them from ``run.json``, its progress index, run
summaries and, when nothing else tells, the task records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from asyncflow._core.reading import CheckpointRecord, LeaseState, Manifest
from asyncflow.ui._preview import OutputPreview

__all__ = [
    "LIVE",
    "Ended",
    "RunView",
    "TaskDetail",
    "TaskView",
    "WaitView",
    "edges",
    "error_type",
    "parent_of",
    "waits_of",
]

LIVE = frozenset({"running", "waiting"})


class _Error(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def traceback(self) -> str: ...


class Ended(Protocol):
    """What storage says of a task that ended: an index entry, a summary's, or a record's."""

    @property
    def outcome(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def error(self) -> _Error | None: ...


@dataclass(frozen=True, slots=True)
class TaskView:
    """One task of a run: what happened to it and where it sits in the flow."""

    key: str
    step: str
    status: str
    index: int
    depends_on: tuple[str, ...] = ()
    kind: str = "task"
    attempts: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    checkpoint: bool = False
    problem: str | None = None
    child: str | None = None
    parent: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class WaitView:
    """What a waiting run waits for: a signal by name, or a time."""

    key: str | None
    signal: str | None
    due_at: float | None


@dataclass(frozen=True, slots=True)
class RunView:
    workflow_id: str
    run_id: str | None
    status: str
    mode: str | None
    created_at: float | None
    updated_at: float | None
    tasks: tuple[TaskView, ...]
    lease: LeaseState | None = None
    waits: tuple[WaitView, ...] = ()
    problems: tuple[str, ...] = ()
    latest: bool = True

    @property
    def live(self) -> bool:
        """Still changing: the page keeps polling."""
        return self.status in LIVE

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for task in self.tasks:
            found[task.status] = found.get(task.status, 0) + 1
        return found


@dataclass(frozen=True, slots=True)
class TaskDetail:
    task: TaskView
    run: RunView
    record: CheckpointRecord | None
    signed: bool
    output: OutputPreview | None


def edges(run: RunView) -> list[tuple[str, str]]:
    """The flow's edges (from, to) between task keys.

    Recorded dependencies when the run has them; otherwise what the mode
    implies: a chain for sequential runs, no edges between parallel tasks.
    """
    keys = {task.key for task in run.tasks}
    if run.mode == "graph" or any(task.depends_on for task in run.tasks):
        children: dict[str, list[str]] = {}
        for task in run.tasks:
            if task.parent is not None:
                children.setdefault(task.parent, []).append(task.key)
        found = []
        for task in run.tasks:
            for dep in task.depends_on:
                if dep not in keys:
                    continue
                if task.parent != dep and dep in children:  # fan-in from a map's children
                    found += [(child, task.key) for child in children[dep]]
                else:
                    found.append((dep, task.key))
        return found
    if run.mode == "parallel":
        return []
    return [(a.key, b.key) for a, b in zip(run.tasks, run.tasks[1:], strict=False)]


_MAPPED = re.compile(r"(.+)\[(\d+)\]")


def parent_of(key: str) -> str | None:
    """The map a mapped child's key (``fetch[3]``) belongs to."""
    match = _MAPPED.fullmatch(key)
    return match.group(1) if match else None


def waits_of(manifest: Manifest) -> tuple[WaitView, ...]:
    """What a parked run waits for, from ``run.json`` (a signal by name, a time, or both)."""
    found = []
    for key, spec in manifest.waiting.items():
        signal = spec.get("signal")
        due = spec.get("wake_at") if spec.get("kind") == "sleep" else spec.get("deadline")
        found.append(
            WaitView(
                key=key,
                signal=signal if isinstance(signal, str) else None,
                due_at=float(due) if isinstance(due, (int, float)) else None,
            )
        )
    return tuple(found)


def error_type(text: str | None) -> str | None:
    """``ValueError`` from a manifest error ``ValueError('boom')``."""
    if not text:
        return None
    head = text.partition("(")[0]
    return head if head.replace(".", "").replace("_", "").isalnum() else None
