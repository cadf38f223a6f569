"""The latest run of a workflow, and one of its tasks, as storage tells them now.

A live run is drawn from its ``run.json`` alone: the progress index there
names each task that ended, with its outcome, attempts, times and error, so
the page costs two reads (``run.json``, the lease) however many tasks the
run has. The task records are read only when the index cannot tell: a
``run.json`` written before the index existed, a crashed run (the index may
miss its last second), or tasks beyond the index's cap. A record is parsed
for its metadata only (never decoded by a serializer, never verified), and
one that cannot be parsed marks its task instead of failing the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from asyncflow._core.errors import CheckpointCorrupt
from asyncflow._core.reading import (
    Finished,
    LeaseState,
    Manifest,
    progress_of,
    read_lease,
    read_manifest,
    record_meta,
    record_times,
    seen_status,
    shape_of,
    task_storage_key,
)
from asyncflow._core.storage import Storage
from asyncflow.ui._build import task_views
from asyncflow.ui._preview import preview
from asyncflow.ui._records import RecordCache, from_record, read_records, run_identity
from asyncflow.ui._shape import child_key, with_shape
from asyncflow.ui._views import RunView, TaskDetail, waits_of

__all__ = ["load_run", "load_task", "run_view"]


def _is_child(key: str, manifest: Manifest) -> bool:
    head, dot, index = key.rpartition(".")
    return bool(dot) and index.isdigit() and manifest.kinds.get(head) == "map"


async def load_run(
    storage: Storage,
    workflow_id: str,
    cache: RecordCache | None = None,
    *,
    manifest: Manifest | Literal["read"] | None = "read",
) -> RunView | None:
    """The latest run of ``workflow_id``, or None if storage has nothing of it.

    A corrupt ``run.json`` raises ``CheckpointCorrupt`` (nothing can be
    drawn without it); a corrupt task record only marks its task. With a
    ``cache``, records already read during this run are not read again.
    ``manifest``: ``run.json`` as the caller just read it.
    """
    if manifest == "read":
        manifest = await read_manifest(storage, workflow_id)
    lease = await read_lease(storage, workflow_id)
    progress = progress_of(manifest) if manifest is not None else None
    indexed: Mapping[str, Finished] = progress.tasks if progress is not None else {}
    status = seen_status(manifest.status, lease) if manifest is not None else "unknown"
    records: dict[str, Finished] = {}
    problems: dict[str, str] = {}
    if progress is None or not progress.complete or status != "running":
        known = None if cache is None else cache.known(workflow_id, run_identity(manifest))
        records, problems = await read_records(storage, workflow_id, known, skip=indexed)
    if manifest is None and not records and not problems:
        return None
    return run_view(workflow_id, manifest, lease, {**records, **indexed}, problems)


def run_view(
    workflow_id: str,
    manifest: Manifest | None,
    lease: LeaseState | None,
    ended: Mapping[str, Finished],
    problems: Mapping[str, str],
) -> RunView:
    """The latest run from ``run.json`` and what ended (index entries, records)."""
    notes: list[str] = []
    if manifest is None:
        notes.append(f"{workflow_id}/run.json is missing: showing the task records alone")
        order: tuple[str, ...] = tuple(sorted({*ended, *problems}))
        tasks = task_views(order, ended, manifest=None, run_status="unknown", problems=problems)
        view = RunView(workflow_id, None, "unknown", None, None, None, tuple(tasks), lease)
        return _with_notes(view, notes, workflow_id, problems, ended, set(order))
    tasks = task_views(
        manifest.tasks, ended, manifest=manifest, run_status=manifest.status, problems=problems
    )
    view = RunView(
        workflow_id=workflow_id,
        run_id=manifest.run_id,
        status=seen_status(manifest.status, lease),
        mode=manifest.mode,
        created_at=manifest.created_at,
        updated_at=manifest.updated_at,
        tasks=tuple(tasks),
        lease=lease,
        waits=waits_of(manifest),
    )
    view = with_shape(view, shape_of(manifest), ended, manifest.outcomes)
    listed = set(manifest.tasks) | {
        child_key(key, index) for key, count in manifest.children.items() for index in range(count)
    }
    listed |= {key for key in {*ended, *problems} if _is_child(key, manifest)}
    return _with_notes(view, notes, workflow_id, problems, ended, listed)


def _with_notes(
    view: RunView,
    notes: list[str],
    workflow_id: str,
    problems: Mapping[str, str],
    ended: Mapping[str, Finished],
    listed: set[str],
) -> RunView:
    notes += [
        f"{task_storage_key(workflow_id, key)}: a record of no task in run.json"
        for key in sorted({*ended, *problems} - listed)
    ]
    notes += [
        f"{task_storage_key(workflow_id, key)}: {text}"
        for key, text in sorted(problems.items())
        if key in listed
    ]
    if not notes:
        return view
    from dataclasses import replace

    return replace(view, problems=tuple(notes))


async def load_task(storage: Storage, workflow_id: str, key: str) -> TaskDetail | None:
    """One task of the latest run with its record's metadata and output preview.

    Reads ``run.json``, the lease and that one record, not the whole run
    (except for a failed run recorded before outcomes were, whose failed
    task is found by looking at every record).
    """
    manifest = await read_manifest(storage, workflow_id)
    where = task_storage_key(workflow_id, key)
    blob = await storage.read(where)
    if manifest is not None and not manifest.outcomes and manifest.status != "running":
        run = await load_run(storage, workflow_id)
    elif manifest is None and blob is None:
        run = None
    else:
        progress = progress_of(manifest) if manifest is not None else None
        ended: dict[str, Finished] = {}
        problems: dict[str, str] = {}
        if progress is not None and key in progress.tasks:
            ended[key] = progress.tasks[key]
        elif blob is not None:
            try:
                ended[key] = from_record(key, record_times(blob.data, where, workflow_id, key))
            except CheckpointCorrupt as exc:
                problems[key] = str(exc)
        lease = await read_lease(storage, workflow_id)
        run = run_view(workflow_id, manifest, lease, ended, problems)
    task = None if run is None else next((t for t in run.tasks if t.key == key), None)
    if run is None or task is None:
        return None
    if blob is None:
        return TaskDetail(task, run, None, False, None)
    try:
        record, signed = record_meta(blob.data, where, workflow_id, key)
    except CheckpointCorrupt:
        return TaskDetail(task, run, None, False, preview(blob.data))
    return TaskDetail(task, run, record, signed, preview(blob.data))
