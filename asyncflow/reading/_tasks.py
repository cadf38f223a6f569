"""A run's tasks as storage tells them, whatever told each one.

One builder for every source: the progress index of a live ``run.json``,
a run summary, or the task records. Each task that ended is an ``Ended``
entry; ``run.json`` (when it is this run's) adds the flow order, the step
names, the outcomes and errors of an ended run, and what is running or
waiting now. Then the flow's shape: dependencies, a map's children (added
after their map, each depending on it), child flows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.shape import RunShape
from asyncflow.reading._keys import child_key, map_child
from asyncflow.reading._waits import WaitState, waits_of

__all__ = ["Ended", "TaskState", "WaitState", "shape_of", "task_states", "waits_of", "with_shape"]


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
class TaskState:
    """One task of a run: what happened to it and where it sits in the flow.

    ``status`` is an outcome (``completed``, ``skipped`` = restored,
    ``failed``, ``cancelled``, ``waiting``, ``not run``) or, while the run
    is live, ``running`` / ``pending``. A map's children follow their map,
    with ``parent`` naming it; ``child`` is the workflow id of a child flow.
    ``problem`` says why its record could not be read. ``signed`` is
    ``None`` when no record was read to tell. ``reason`` says why a
    ``skipped`` task that was not restored never ran (``upstream failed``).
    """

    key: str
    step: str
    status: str
    index: int
    depends_on: tuple[str, ...] = ()
    kind: str = "step"
    over: str | None = None
    children: int | None = None
    attempts: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    checkpoint: bool = False
    signed: bool | None = None
    problem: str | None = None
    child: str | None = None
    parent: str | None = None
    reason: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "step": self.step,
            "status": self.status,
            "task_id": self.index,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "error": self.error,
            "error_type": self.error_type,
            "checkpoint": self.checkpoint,
            "signed": self.signed,
            "depends_on": list(self.depends_on),
            "kind": self.kind,
            "over": self.over,
            "children": self.children,
            "parent": self.parent,
            "child": self.child,
            "problem": self.problem,
            "reason": self.reason,
        }


def error_type(text: str | None) -> str | None:
    """``ValueError`` from a ``run.json`` error ``ValueError('boom')``."""
    if not text:
        return None
    head = text.partition("(")[0]
    return head if head.replace(".", "").replace("_", "").isalnum() else None


def _status(
    key: str,
    entry: Ended | None,
    manifest: Manifest | None,
    run_status: str,
    first_missing: list[bool],
) -> str:
    if manifest is not None:
        outcome = manifest.outcomes.get(key)
        if outcome is not None:
            return outcome
        if key in manifest.waiting:
            return "waiting"
    if entry is not None:
        return entry.outcome
    if first_missing[0] and run_status in ("failed", "cancelled") and manifest is not None:
        # run.json from before outcomes were recorded: the first task without a record
        first_missing[0] = False
        return run_status
    if run_status == "running":
        return "running" if manifest is not None and key in manifest.running else "pending"
    return "not run"


def _from_entry(state: TaskState, entry: Ended | None) -> TaskState:
    if entry is None:
        return state
    error = entry.error
    return replace(
        state,
        attempts=entry.attempts,
        started_at=entry.started_at,
        finished_at=entry.finished_at,
        error=f"{error.type}: {error.message}" if error is not None else state.error,
        error_type=error.type if error is not None else state.error_type,
        traceback=(error.traceback or None) if error is not None else None,
        checkpoint=entry.outcome in ("completed", "skipped"),
    )


def task_states(
    order: Sequence[str],
    ended: Mapping[str, Ended],
    *,
    manifest: Manifest | None,
    run_status: str,
    problems: Mapping[str, str] | None = None,
    signed: Mapping[str, bool] | None = None,
) -> list[TaskState]:
    """A state of each key in ``order``; ``manifest`` only if it is this run's ``run.json``.

    ``run_status`` is the run's status as recorded (``running`` even when
    its runner is gone): it decides between ``running``, ``pending`` and
    ``not run`` for a task that has not ended.
    """
    problems = problems or {}
    signed = signed or {}
    steps = (
        dict(zip(manifest.tasks, manifest.steps, strict=False))
        if manifest is not None and len(manifest.steps) == len(manifest.tasks)
        else {}
    )
    first_missing = [True]
    tasks = []
    for index, key in enumerate(order):
        entry = ended.get(key)
        fallback = manifest.errors.get(key) if manifest is not None else None
        state = TaskState(
            key=key,
            step=steps.get(key) or (entry.step if entry is not None and entry.step else key),
            status=_status(key, entry, manifest, run_status, first_missing),
            index=index,
            error=fallback,
            error_type=error_type(fallback),
            problem=problems.get(key),
            signed=signed.get(key),
        )
        state = _from_entry(state, entry)
        reason = manifest.skipped.get(key) if manifest is not None else None
        if reason is not None and state.status == "skipped":
            state = replace(state, reason=reason, checkpoint=False)
        tasks.append(state)
    return tasks


def shape_of(manifest: Manifest) -> RunShape:
    """The graph ``run.json`` records for the latest run."""
    return RunShape(manifest.depends_on, manifest.kinds, manifest.over, manifest.children)


def _child(
    run_status: str, map_task: TaskState, index: int, ended: Ended | None, outcome: str | None
) -> TaskState:
    key = child_key(map_task.key, index)
    if outcome is not None:
        status = outcome
    elif ended is not None:
        status = ended.outcome
    elif f"{key}:" in (map_task.error or ""):
        status = "failed"
    elif run_status == "running":
        status = "pending"
    else:
        status = "not run"
    state = TaskState(
        key=key,
        step=map_task.step,
        status=status,
        index=map_task.index,
        depends_on=(map_task.key,),
        parent=map_task.key,
    )
    return _from_entry(state, ended)


def _counts(shape: RunShape, ended: Mapping[str, Ended]) -> dict[str, int]:
    """Each map's number of children: recorded, or as many as have ended so far."""
    maps = {key for key, kind in shape.kinds.items() if kind == "map"}
    counts = {key: shape.children.get(key, 0) for key in maps}
    for key in ended:
        found = map_child(key, maps)
        if found is not None:
            counts[found[0]] = max(counts[found[0]], found[1] + 1)
    return counts


def _ran_since(map_key: str, ended: Mapping[str, Ended], since: float) -> bool:
    for key, entry in ended.items():
        found = map_child(key, (map_key,))
        if found is not None and entry.finished_at is not None and entry.finished_at >= since:
            return True
    return False


def with_shape(
    workflow_id: str,
    run_status: str,
    tasks: Sequence[TaskState],
    shape: RunShape | None,
    ended: Mapping[str, Ended] | None = None,
    outcomes: Mapping[str, str] | None = None,
    since: float | None = None,
) -> tuple[TaskState, ...]:
    """``tasks`` with ``shape``; ``ended`` tells the map children that ended, ``outcomes``
    (an ended run's ``run.json``) may override their status. ``since``: when a live
    run started (a map with a child that ended since is running)."""
    if shape is None or not shape:
        return tuple(tasks)
    ended = ended or {}
    outcomes = outcomes or {}
    counts = _counts(shape, ended)
    present = {task.key for task in tasks}
    shaped_tasks: list[TaskState] = []
    for task in tasks:
        kind = shape.kinds.get(task.key, "step")
        shaped = replace(
            task,
            depends_on=shape.depends_on.get(task.key, ()),
            kind=kind,
            over=shape.over.get(task.key),
            children=shape.children.get(task.key),
            child=f"{workflow_id}.{task.key}" if kind == "flow" else None,
        )
        if shaped.status == "pending" and since is not None and _ran_since(task.key, ended, since):
            # a child that ended in this run means its map runs: run.json's list
            # of running tasks lags the records (it is rewritten once a second)
            shaped = replace(shaped, status="running")
        shaped_tasks.append(shaped)
        for index in range(counts.get(task.key, 0)):
            key = child_key(task.key, index)
            if key not in present:
                shaped_tasks.append(
                    _child(run_status, shaped, index, ended.get(key), outcomes.get(key))
                )
    return tuple(shaped_tasks)
