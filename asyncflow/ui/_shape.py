"""The flow's shape on a run view: dependencies, map children, child flows.

``run.json`` records the shape (``depends_on``, ``kinds``, ``over``,
``children``), so the viewer draws a graph flow without its code. A map's
children (``fetch.0``, ``fetch.1``…) are not in the run's task list: they
are added after their map, each depending on it, and a task that depends on
the map is drawn depending on every child (the fan-in). A task of kind
``flow`` is a child workflow, ``{workflow_id}.{key}``, with its own page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from asyncflow._core.manifest import Manifest
from asyncflow.ui._runs import RunView, TaskView

__all__ = ["child_key", "with_shape"]


class _Timed(Protocol):
    @property
    def attempts(self) -> int: ...
    @property
    def started_at(self) -> float: ...
    @property
    def finished_at(self) -> float: ...


def child_key(key: str, index: int) -> str:
    """The key of child ``index`` of map ``key``, as the engine names it."""
    return f"{key}.{index}"


def _child(
    run: RunView, manifest: Manifest, map_task: TaskView, index: int, record: _Timed | None
) -> TaskView:
    key = child_key(map_task.key, index)
    error = manifest.errors.get(map_task.key) or ""
    if record is not None:
        status = "completed"
    elif f"{key}:" in error:
        status = "failed"
    elif run.status == "running":
        status = "pending"
    else:
        status = "not run"
    return TaskView(
        key=key,
        step=map_task.step,
        status=manifest.outcomes.get(key, status),
        index=map_task.index,
        depends_on=(map_task.key,),
        kind="task",
        attempts=record.attempts if record is not None else None,
        started_at=record.started_at if record is not None else None,
        finished_at=record.finished_at if record is not None else None,
        checkpoint=record is not None,
        parent=map_task.key,
    )


def with_shape(
    run: RunView, manifest: Manifest | None, records: Mapping[str, _Timed] | None = None
) -> RunView:
    """``run`` with the recorded shape; ``records`` are the children's, by key."""
    if manifest is None or not (manifest.depends_on or manifest.kinds):
        return run
    records = records or {}
    present = {task.key for task in run.tasks}
    tasks: list[TaskView] = []
    for task in run.tasks:
        kind = manifest.kinds.get(task.key, "task")
        shaped = replace(
            task,
            depends_on=manifest.depends_on.get(task.key, ()),
            kind=kind,
            child=f"{run.workflow_id}.{task.key}" if kind == "flow" else None,
        )
        tasks.append(shaped)
        if kind == "map":
            for index in range(manifest.children.get(task.key, 0)):
                key = child_key(task.key, index)
                if key not in present:
                    tasks.append(_child(run, manifest, shaped, index, records.get(key)))
    return replace(run, tasks=tuple(tasks))
