"""Runs as their summaries tell them: a workflow's history, a past run, an ended latest run.

Every ``start()`` leaves ``{wf}/runs/{run_id}.json`` with each task's
outcome, attempts, times and error (type, message, traceback), and the
run's graph and its maps' children. A run that has ended is read from that
one summary and ``run.json`` (its order and step names, when it is the
latest run), with no task record read at all; a live run comes from
``run.json`` and its progress index (``read_run``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from asyncflow._kernel.capabilities import read_many
from asyncflow._kernel.errors import CheckpointCorrupt
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.layout import manifest_key, run_summary_key
from asyncflow._kernel.storage import Storage
from asyncflow._kernel.summary import RunSummary, runs_prefix
from asyncflow.reading._leases import live_run_id, read_lease, seen_status
from asyncflow.reading._records import RecordCache
from asyncflow.reading._runs import (
    RunState,
    read_manifest,
    read_run,
    run_from_summary,
    with_waits,
)
from asyncflow.reading._tasks import TaskState

__all__ = [
    "ENDED",
    "HistoryPage",
    "RunRow",
    "read_history",
    "read_latest",
    "read_past_run",
    "read_summary",
    "run_history",
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


def _seen(summary: RunSummary, live: str | None) -> RunSummary:
    """A summary left ``running`` by a runner that is gone reads as ``crashed``."""
    status = seen_status(summary.status, None, live=summary.run_id == live)
    return summary if status == summary.status else replace(summary, status=status)


async def _summary(storage: Storage, workflow_id: str, run_id: str) -> RunSummary | None:
    where = run_summary_key(workflow_id, run_id)
    blob = await storage.read(where)
    return None if blob is None else RunSummary.decode(blob.data, where)


async def _run_ids(storage: Storage, workflow_id: str) -> list[str]:
    head = runs_prefix(workflow_id)
    return [
        name[len(head) : -len(".json")]
        async for name in storage.list(head)
        if name.endswith(".json") and "/" not in name[len(head) :]
    ]


async def run_history(
    storage: Storage, workflow_id: str, *, concurrency: int = 16
) -> list[RunSummary]:
    """Every run summary of ``workflow_id``, oldest first (run ids sort by start time).

    A summary still ``running`` that is not the live run of ``run.json``
    belongs to a runner that vanished: it is reported ``crashed``.
    ``CheckpointCorrupt`` names a summary that cannot be decoded.
    """
    names = await _run_ids(storage, workflow_id)
    keys = [run_summary_key(workflow_id, run_id) for run_id in names]
    blobs = await read_many(storage, keys, concurrency=concurrency)
    found = {
        run_id: RunSummary.decode(blob.data, key)
        for run_id, key, blob in zip(names, keys, blobs, strict=True)
        if blob is not None
    }
    runs = [found[name] for name in sorted(found)]
    if any(run.status == "running" for run in runs):
        live = await live_run_id(storage, workflow_id)
        runs = [_seen(run, live) for run in runs]
    return runs


async def read_summary(storage: Storage, workflow_id: str, run_id: str) -> RunSummary | None:
    """One run's summary, or ``None`` if there is none by that id."""
    validate_id(run_id, "run id")
    summary = await _summary(storage, workflow_id, run_id)
    if summary is not None and summary.status == "running":
        summary = _seen(summary, await live_run_id(storage, workflow_id))
    return summary


async def read_latest(
    storage: Storage, workflow_id: str, cache: RecordCache | None = None
) -> RunState | None:
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
            state = run_from_summary(
                workflow_id,
                manifest,
                lease,
                summary,
                status=seen_status(manifest.status, lease),
                latest=True,
            )
            return await with_waits(storage, state, manifest)
    return await read_run(storage, workflow_id, cache, manifest=manifest)


async def read_past_run(storage: Storage, workflow_id: str, run_id: str) -> RunState | None:
    """One run of the history, from its summary alone."""
    validate_id(run_id, "run id")
    summary = await _summary(storage, workflow_id, run_id)
    if summary is None:
        return None
    manifest = await read_manifest(storage, workflow_id)
    latest = manifest is not None and manifest.run_id == run_id
    if summary.status == "running":
        summary = _seen(summary, await live_run_id(storage, workflow_id))
    return run_from_summary(
        workflow_id, manifest, None, summary, status=summary.status, latest=latest
    )


async def read_history(
    storage: Storage, workflow_id: str, *, page: int = 1, per_page: int = 50
) -> HistoryPage | None:
    """A page of ``workflow_id``'s runs, newest first: one listing, the page's summaries.

    A summary that cannot be decoded is a row with status ``corrupt`` and
    its problem, not an error: the other runs are still shown.
    """
    if await storage.read(manifest_key(workflow_id)) is None:
        return None
    names = await _run_ids(storage, workflow_id)
    names.sort(reverse=True)
    pages = max(1, math.ceil(len(names) / per_page))
    page = min(max(1, page), pages)
    chosen = names[(page - 1) * per_page : page * per_page]
    live = await live_run_id(storage, workflow_id)
    manifest = await read_manifest(storage, workflow_id)
    latest = manifest.run_id if manifest is not None else None
    rows: dict[str, RunRow] = {}
    keys = [run_summary_key(workflow_id, run_id) for run_id in chosen]
    blobs = await read_many(storage, keys, concurrency=16)
    for run_id, key, blob in zip(chosen, keys, blobs, strict=True):
        if blob is None:
            continue
        try:
            summary = RunSummary.decode(blob.data, key)
        except CheckpointCorrupt as exc:
            rows[run_id] = RunRow(run_id, "corrupt", None, None, 0, 0, "", 0, False, str(exc))
            continue
        failed = sum(1 for task in summary.tasks if task.outcome == "failed")
        rows[run_id] = RunRow(
            run_id=run_id,
            status=_seen(summary, live).status,
            started_at=summary.started_at,
            finished_at=summary.finished_at,
            tasks=len(summary.tasks),
            failed=failed,
            host=summary.host,
            pid=summary.pid,
            latest=run_id == latest,
        )
    return HistoryPage(
        workflow_id,
        tuple(rows[run_id] for run_id in chosen if run_id in rows),
        len(names),
        page,
        pages,
    )


async def with_summary_error(storage: Storage, run: RunState, task: TaskState) -> TaskState:
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
