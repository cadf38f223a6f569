"""A run's task views from what storage tells of each task, whatever told it.

One builder for every source: the progress index of a live ``run.json``,
a run summary, or the task records. Each task that ended is an ``Ended``
entry; ``run.json`` (when it is this run's) adds the flow order, the step
names, the outcomes and errors of an ended run, and what is running or
waiting now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from asyncflow._core.reading import Manifest
from asyncflow.ui._views import Ended, TaskView, error_type, parent_of

__all__ = ["task_views"]


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


def task_views(
    order: Sequence[str],
    ended: Mapping[str, Ended],
    *,
    manifest: Manifest | None,
    run_status: str,
    problems: Mapping[str, str] | None = None,
) -> list[TaskView]:
    """A view of each key in ``order``; ``manifest`` only if it is this run's ``run.json``.

    ``run_status`` is the run's status as recorded (``running`` even when
    its runner is gone): it decides between ``running``, ``pending`` and
    ``not run`` for a task that has not ended.
    """
    problems = problems or {}
    steps = (
        dict(zip(manifest.tasks, manifest.steps, strict=False))
        if manifest is not None and len(manifest.steps) == len(manifest.tasks)
        else {}
    )
    first_missing = [True]
    tasks = []
    for index, key in enumerate(order):
        entry = ended.get(key)
        error = entry.error if entry is not None else None
        fallback = manifest.errors.get(key) if manifest is not None else None
        tasks.append(
            TaskView(
                key=key,
                step=steps.get(key) or (entry.step if entry is not None and entry.step else key),
                status=_status(key, entry, manifest, run_status, first_missing),
                index=index,
                attempts=entry.attempts if entry is not None else None,
                started_at=entry.started_at if entry is not None else None,
                finished_at=entry.finished_at if entry is not None else None,
                error=f"{error.type}: {error.message}" if error is not None else fallback,
                error_type=error.type if error is not None else error_type(fallback),
                traceback=(error.traceback or None) if error is not None else None,
                checkpoint=entry is not None and entry.outcome in ("completed", "skipped"),
                problem=problems.get(key),
                parent=parent_of(key),
            )
        )
    return tasks
