"""The flow's shape on a run view: dependencies, map children, child flows.

``run.json`` records the latest run's shape and a run summary its own
(``depends_on``, ``kinds``, ``over``, ``children``), so the viewer draws a
graph flow without its code. A map's children (``fetch.0``, ``fetch.1``…)
are not in the run's task list: they are added after their map, each
depending on it, and a task that depends on the map is drawn depending on
every child (the fan-in). While a run is live its maps' counts are not
recorded yet: the children the progress index names are drawn. A task of
kind ``flow`` is a child workflow, ``{workflow_id}.{key}``, with its own page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from asyncflow._core.reading import RunShape
from asyncflow.ui._views import Ended, RunView, TaskView

__all__ = ["child_key", "with_shape"]


def child_key(key: str, index: int) -> str:
    """The key of child ``index`` of map ``key``, as the engine names it."""
    return f"{key}.{index}"


def _child(
    run: RunView, map_task: TaskView, index: int, ended: Ended | None, outcome: str | None
) -> TaskView:
    key = child_key(map_task.key, index)
    if outcome is not None:
        status = outcome
    elif ended is not None:
        status = ended.outcome
    elif f"{key}:" in (map_task.error or ""):
        status = "failed"
    elif run.status == "running":
        status = "pending"
    else:
        status = "not run"
    error = ended.error if ended is not None else None
    return TaskView(
        key=key,
        step=map_task.step,
        status=status,
        index=map_task.index,
        depends_on=(map_task.key,),
        kind="task",
        attempts=ended.attempts if ended is not None else None,
        started_at=ended.started_at if ended is not None else None,
        finished_at=ended.finished_at if ended is not None else None,
        error=f"{error.type}: {error.message}" if error is not None else None,
        error_type=error.type if error is not None else None,
        traceback=(error.traceback or None) if error is not None else None,
        checkpoint=ended is not None and ended.outcome in ("completed", "skipped"),
        parent=map_task.key,
    )


def _counts(shape: RunShape, ended: Mapping[str, Ended]) -> dict[str, int]:
    """Each map's number of children: recorded, or as many as the index names so far."""
    maps = {key for key, kind in shape.kinds.items() if kind == "map"}
    counts = {key: shape.children.get(key, 0) for key in maps}
    for key in ended:
        head, dot, index = key.rpartition(".")
        if dot and head in maps and index.isdigit():
            counts[head] = max(counts[head], int(index) + 1)
    return counts


def with_shape(
    run: RunView,
    shape: RunShape | None,
    ended: Mapping[str, Ended] | None = None,
    outcomes: Mapping[str, str] | None = None,
) -> RunView:
    """``run`` with ``shape``; ``ended`` tells the children that ended, ``outcomes``
    (an ended run's ``run.json``) may override their status."""
    if shape is None or not shape:
        return run
    ended = ended or {}
    outcomes = outcomes or {}
    counts = _counts(shape, ended)
    present = {task.key for task in run.tasks}
    tasks: list[TaskView] = []
    for task in run.tasks:
        kind = shape.kinds.get(task.key, "task")
        shaped = replace(
            task,
            depends_on=shape.depends_on.get(task.key, ()),
            kind=kind,
            child=f"{run.workflow_id}.{task.key}" if kind == "flow" else None,
        )
        tasks.append(shaped)
        for index in range(counts.get(task.key, 0)):
            key = child_key(task.key, index)
            if key not in present:
                tasks.append(_child(run, shaped, index, ended.get(key), outcomes.get(key)))
    return replace(run, tasks=tuple(tasks))
