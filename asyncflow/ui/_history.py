"""Runs as their summaries tell them: the history page, a past run, a finished latest run.

Every ``start()`` leaves ``{wf}/runs/{run_id}.json`` with each task's
outcome, attempts, times and error (type, message, traceback), and since
the progress index the run's graph and its maps' children. A run that has
ended is drawn from that one summary and ``run.json`` (its order and step
names, when it is the latest run), with no task record read at all; a live
run comes from ``run.json`` and its progress index (``_runs.load_run``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from asyncflow._core.concurrency import run_all
from asyncflow._core.errors import CheckpointCorrupt
from asyncflow._core.ids import validate_id
from asyncflow._core.reading import (
    LeaseState,
    Manifest,
    RunSummary,
    manifest_key,
    read_lease,
    read_manifest,
    run_summary_key,
    runs_prefix,
    seen_status,
    shape_of,
)
from asyncflow._core.storage import Storage
from asyncflow.ui._build import task_views
from asyncflow.ui._records import RecordCache
from asyncflow.ui._runs import load_run
from asyncflow.ui._shape import with_shape
from asyncflow.ui._views import RunView, TaskView, waits_of

__all__ = [
    "HistoryPage",
    "RunRow",
    "load_history",
    "load_latest",
    "load_past_run",
    "with_summary_error",
]

#: Statuses a summary keeps once its run is over.
ENDED = frozenset({"completed", "failed", "cancelled", "waiting"})


@dataclass(frozen=True, slots=True)
class RunRow:
    """One row of a workflow's run history."""

    run_id: str
    status: str
    started_at: float | None
    finished_at: float | None
    tasks: int
    failed: int
    host: str
    pid: int
    latest: bool
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    workflow_id: str
    rows: tuple[RunRow, ...]
    total: int
    page: int
    pages: int


async def _summary(storage: Storage, workflow_id: str, run_id: str) -> RunSummary | None:
    where = run_summary_key(workflow_id, run_id)
    blob = await storage.read(where)
    return None if blob is None else RunSummary.decode(blob.data, where)


def summary_view(
    workflow_id: str,
    manifest: Manifest | None,
    lease: LeaseState | None,
    summary: RunSummary,
    *,
    status: str,
    latest: bool,
) -> RunView:
    """A run drawn from its summary; ``manifest`` (if it is this run's) adds order and steps."""
    own = manifest if manifest is not None and latest else None
    ended = {task.key: task for task in summary.tasks}
    order = list(own.tasks) if own is not None else []
    order += [key for key in ended if key not in set(order)]
    tasks = task_views(order, ended, manifest=own, run_status=summary.status)
    view = RunView(
        workflow_id=workflow_id,
        run_id=summary.run_id,
        status=status,
        mode=summary.mode,
        created_at=summary.started_at,
        updated_at=summary.finished_at,
        tasks=tuple(tasks),
        lease=lease,
        waits=waits_of(own) if own is not None else (),
        latest=latest,
    )
    shape = summary.shape or (shape_of(own) if own is not None else None)
    children = {task.key: task for task in summary.children}
    return with_shape(view, shape, children, own.outcomes if own is not None else None)


async def load_latest(
    storage: Storage, workflow_id: str, cache: RecordCache | None = None
) -> RunView | None:
    """The latest run: from its summary once it ended, else from ``run.json``'s index."""
    manifest = await read_manifest(storage, workflow_id)
    if manifest is not None and manifest.run_id and manifest.status in ENDED:
        try:
            summary = await _summary(storage, workflow_id, manifest.run_id)
        except CheckpointCorrupt:
            summary = None  # the records still tell the run; the page names the problem
        # A summary from before the index does not list a map's children: records do.
        if (
            summary is not None
            and summary.status in ENDED
            and (summary.shape is not None or not manifest.children)
        ):
            lease = await read_lease(storage, workflow_id)
            return summary_view(
                workflow_id,
                manifest,
                lease,
                summary,
                status=seen_status(manifest.status, lease),
                latest=True,
            )
    return await load_run(storage, workflow_id, cache, manifest=manifest)


async def _live_run_id(storage: Storage, workflow_id: str) -> str | None:
    manifest = await read_manifest(storage, workflow_id)
    if manifest is None:
        return None
    lease = await read_lease(storage, workflow_id) if manifest.status == "running" else None
    return manifest.run_id if seen_status(manifest.status, lease) == "running" else None


def _seen(summary: RunSummary, live: str | None) -> str:
    """A summary left ``running`` by a runner that is gone reads as ``crashed``."""
    if summary.status == "running" and summary.run_id != live:
        return "crashed"
    return summary.status


async def load_past_run(storage: Storage, workflow_id: str, run_id: str) -> RunView | None:
    """One run of the history, from its summary alone."""
    validate_id(run_id, "run id")
    summary = await _summary(storage, workflow_id, run_id)
    if summary is None:
        return None
    manifest = await read_manifest(storage, workflow_id)
    latest = manifest is not None and manifest.run_id == run_id
    live = await _live_run_id(storage, workflow_id)
    return summary_view(
        workflow_id,
        manifest,
        None,
        summary,
        status=_seen(summary, live),
        latest=latest,
    )


async def load_history(
    storage: Storage, workflow_id: str, *, page: int = 1, per_page: int = 50
) -> HistoryPage | None:
    """A page of ``workflow_id``'s runs, newest first: one listing, the page's summaries."""
    if await storage.read(manifest_key(workflow_id)) is None:
        return None
    head = runs_prefix(workflow_id)
    names = [
        name[len(head) : -len(".json")]
        async for name in storage.list(head)
        if name.endswith(".json") and "/" not in name[len(head) :]
    ]
    names.sort(reverse=True)
    pages = max(1, math.ceil(len(names) / per_page))
    page = min(max(1, page), pages)
    chosen = names[(page - 1) * per_page : page * per_page]
    live = await _live_run_id(storage, workflow_id)
    manifest = await read_manifest(storage, workflow_id)
    latest = manifest.run_id if manifest is not None else None
    rows: dict[str, RunRow] = {}
    pending = iter(chosen)

    async def worker() -> None:
        for run_id in pending:
            try:
                summary = await _summary(storage, workflow_id, run_id)
            except CheckpointCorrupt as exc:
                rows[run_id] = RunRow(run_id, "corrupt", None, None, 0, 0, "", 0, False, str(exc))
                continue
            if summary is None:
                continue
            failed = sum(1 for task in summary.tasks if task.outcome == "failed")
            rows[run_id] = RunRow(
                run_id=run_id,
                status=_seen(summary, live),
                started_at=summary.started_at,
                finished_at=summary.finished_at,
                tasks=len(summary.tasks),
                failed=failed,
                host=summary.host,
                pid=summary.pid,
                latest=run_id == latest,
            )

    if chosen:
        await run_all([worker] * min(16, len(chosen)))
    return HistoryPage(
        workflow_id,
        tuple(rows[run_id] for run_id in chosen if run_id in rows),
        len(names),
        page,
        pages,
    )


async def with_summary_error(storage: Storage, run: RunView, task: TaskView) -> TaskView:
    """``task`` with the error its run's summary recorded (type, message, traceback)."""
    if run.run_id is None or task.status != "failed" or task.traceback:
        return task
    try:
        summary = await _summary(storage, run.workflow_id, run.run_id)
    except CheckpointCorrupt:
        return task
    ran = next((t for t in summary.tasks if t.key == task.key), None) if summary else None
    if ran is None or ran.error is None:
        return task
    return replace(
        task,
        error=f"{ran.error.type}: {ran.error.message}",
        error_type=ran.error.type,
        traceback=ran.error.traceback,
        attempts=task.attempts if task.attempts is not None else ran.attempts,
        started_at=task.started_at if task.started_at is not None else ran.started_at,
        finished_at=task.finished_at if task.finished_at is not None else ran.finished_at,
    )
