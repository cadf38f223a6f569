"""The latest run of a workflow, and one of its tasks, as storage tells them now.

A live run is read from its ``run.json`` alone: the progress index there
names each task that ended, with its outcome, attempts, times and error, so
``read_run`` costs two reads (``run.json``, the lease) however many tasks
the run has. The task records are read only when the index cannot tell: a
``run.json`` written before the index existed, a crashed run (the index may
miss its last second), or tasks beyond the index's cap. A record is parsed
for its metadata only (never decoded by a serializer, never verified), and
one that cannot be parsed marks its task (``problem``) instead of failing
the read. A run that ended is read from its summary by ``read_latest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from asyncflow._kernel.checkpoint import CheckpointRecord
from asyncflow._kernel.errors import CheckpointCorrupt
from asyncflow._kernel.layout import manifest_key, task_storage_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.storage import Storage
from asyncflow._kernel.summary import RunSummary
from asyncflow.reading._keys import child_key, map_child
from asyncflow.reading._leases import LeaseState, read_lease, seen_status
from asyncflow.reading._output import OutputPreview, output_preview
from asyncflow.reading._progress import Finished, progress_of
from asyncflow.reading._records import (
    RecordCache,
    ended_from_record,
    read_ended,
    record_meta,
    record_times,
    run_identity,
)
from asyncflow.reading._tasks import (
    TaskState,
    WaitState,
    shape_of,
    task_states,
    waits_of,
    with_shape,
)
from asyncflow.reading._waits import armed_waits, due_problem, wait_steps, with_arrivals

__all__ = [
    "LIVE",
    "RunState",
    "TaskDetail",
    "read_manifest",
    "read_run",
    "read_task",
    "run_from_summary",
    "with_waits",
]

#: Statuses of a run that is still changing.
LIVE = frozenset({"running", "waiting"})


@dataclass(frozen=True, slots=True)
class RunState:
    """One run of a workflow, as storage records it (the latest unless ``latest`` is false).

    ``status`` is as a reader sees it (``crashed`` when ``run.json`` says
    ``running`` with no live lease). ``problems`` are notes on what could
    not be read (a missing ``run.json``, a corrupt record, a record of no
    task); ``extra_records`` the storage keys of records no task of the run
    names. ``waiting`` is ``run.json``'s raw account of a parked run.
    """

    workflow_id: str
    run_id: str | None
    status: str
    mode: str | None
    created_at: float | None
    updated_at: float | None
    tasks: tuple[TaskState, ...]
    lease: LeaseState | None = None
    waits: tuple[WaitState, ...] = ()
    problems: tuple[str, ...] = ()
    latest: bool = True
    extra_records: tuple[str, ...] = ()
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    due_at: float | None = None
    running: tuple[str, ...] = ()
    interrupted: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        """Still changing: a page showing it keeps polling."""
        return self.status in LIVE

    @property
    def flow_tasks(self) -> tuple[TaskState, ...]:
        """The flow's own tasks, in flow order: a map's children left out (its row counts them)."""
        return tuple(task for task in self.tasks if task.parent is None)

    def children_done(self, key: str) -> tuple[int, int] | None:
        """``(ended, total)`` children of map ``key`` (``None`` before it expanded)."""
        task = next((t for t in self.tasks if t.key == key and t.parent is None), None)
        if task is None or task.kind != "map":
            return None
        rows = [t for t in self.tasks if t.parent == key]
        total = task.children if task.children is not None else len(rows)
        if not total and not rows:
            return None
        ended = sum(1 for t in rows if t.status not in ("pending", "running", "not run"))
        return ended, max(total, len(rows))

    def counts(self) -> dict[str, int]:
        """How many tasks are in each status (map children included)."""
        found: dict[str, int] = {}
        for task in self.tasks:
            found[task.status] = found.get(task.status, 0) + 1
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "status": self.status,
            "running": list(self.running),
            "interrupted": list(self.interrupted),
            "mode": self.mode,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "lease": self.lease.to_json() if self.lease is not None else None,
            "tasks": [task.to_json() for task in self.flow_tasks],
            "extra_records": list(self.extra_records),
            "problems": list(self.problems),
            "waiting": self.waiting,
            "waits": [wait.to_json() for wait in self.waits],
            "due_at": self.due_at,
        }


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """One task with its record's metadata (output undecoded) and a preview of its output."""

    task: TaskState
    run: RunState
    record: CheckpointRecord | None
    signed: bool
    output: OutputPreview | None


async def read_manifest(storage: Storage, workflow_id: str) -> Manifest | None:
    """``run.json``, or ``None`` if there is none; ``CheckpointCorrupt`` if malformed."""
    where = manifest_key(workflow_id)
    blob = await storage.read(where)
    return None if blob is None else Manifest.decode(blob.data, where)


async def read_run(
    storage: Storage,
    workflow_id: str,
    cache: RecordCache | None = None,
    *,
    manifest: Manifest | Literal["read"] | None = "read",
) -> RunState | None:
    """The latest run of ``workflow_id``, or ``None`` if storage has nothing of it.

    A corrupt ``run.json`` (or progress index) raises ``CheckpointCorrupt``:
    nothing can be told without it; a corrupt task record only marks its
    task. With a ``cache``, records already read during this run are not
    read again. ``manifest``: ``run.json`` as the caller just read it.
    """
    if manifest == "read":
        manifest = await read_manifest(storage, workflow_id)
    lease = await read_lease(storage, workflow_id)
    progress = progress_of(manifest) if manifest is not None else None
    indexed: Mapping[str, Finished] = progress.tasks if progress is not None else {}
    status = seen_status(manifest.status, lease) if manifest is not None else "unknown"
    records: dict[str, Finished] = {}
    problems: dict[str, str] = {}
    signed: dict[str, bool] = {}
    if progress is None or not progress.complete or status != "running":
        known = None if cache is None else cache.known(workflow_id, run_identity(manifest))
        records, problems, signed = await read_ended(storage, workflow_id, known, skip=indexed)
    if manifest is None and not records and not problems:
        return None
    state = run_state(workflow_id, manifest, lease, {**records, **indexed}, problems, signed)
    return await with_waits(storage, state, manifest)


async def with_waits(storage: Storage, state: RunState, manifest: Manifest | None) -> RunState:
    """``state`` with what it waits for and whether each signal arrived.

    A parked run's waits come from ``run.json``; a run blocked on a wait,
    or one that crashed there, from the wait's arming record (one read per
    wait step in progress): a crashed run's armed wait reads ``waiting``,
    with its wake time. A time no date can hold is ``None`` with a note.
    """
    if manifest is None or not state.latest:
        return state
    due, problem = due_problem(manifest)
    notes = state.problems + ((f"{manifest_key(state.workflow_id)}: {problem}",) if problem else ())
    tasks = state.tasks
    if state.status == "waiting":
        waits = waits_of(manifest)
    elif state.status in ("running", "crashed"):
        going = ("running",) if state.status == "running" else ("running", "pending")
        keys = [t.key for t in state.flow_tasks if t.status in going]
        waits = await armed_waits(storage, state.workflow_id, wait_steps(manifest, keys))
        if state.status == "crashed" and waits:
            armed = {wait.key for wait in waits}
            tasks = tuple(
                replace(t, status="waiting") if t.key in armed and t.parent is None else t
                for t in tasks
            )
    else:
        waits = ()
    waits = await with_arrivals(storage, state.workflow_id, waits)
    return replace(state, waits=waits, tasks=tasks, due_at=due, problems=notes)


def run_state(
    workflow_id: str,
    manifest: Manifest | None,
    lease: LeaseState | None,
    ended: Mapping[str, Finished],
    problems: Mapping[str, str],
    signed: Mapping[str, bool] | None = None,
) -> RunState:
    """The latest run from ``run.json`` and what ended (index entries, records)."""
    if manifest is None:
        order: tuple[str, ...] = tuple(sorted({*ended, *problems}, key=_key_order))
        tasks = task_states(
            order, ended, manifest=None, run_status="unknown", problems=problems, signed=signed
        )
        state = RunState(workflow_id, None, "unknown", None, None, None, tuple(tasks), lease)
        notes = [f"{workflow_id}/run.json is missing: showing the task records alone"]
        return _with_notes(state, notes, problems, ended, set(order))
    tasks = task_states(
        manifest.tasks,
        ended,
        manifest=manifest,
        run_status=manifest.status,
        problems=problems,
        signed=signed,
    )
    status = seen_status(manifest.status, lease)
    state = RunState(
        workflow_id=workflow_id,
        run_id=manifest.run_id,
        status=status,
        mode=manifest.mode,
        created_at=manifest.created_at,
        updated_at=manifest.updated_at,
        tasks=with_shape(
            workflow_id,
            manifest.status,
            tasks,
            shape_of(manifest),
            ended,
            manifest.outcomes,
            since=manifest.started_at if manifest.status == "running" else None,
        ),
        lease=lease,
        waits=waits_of(manifest),
        waiting=manifest.waiting,
        due_at=manifest.due_at,
        running=manifest.running,
        interrupted=manifest.interrupted,
    )
    maps = {key for key, kind in manifest.kinds.items() if kind == "map"}
    listed = set(manifest.tasks) | {
        child_key(key, index) for key, count in manifest.children.items() for index in range(count)
    }
    listed |= {key for key in {*ended, *problems} if map_child(key, maps) is not None}
    return _with_notes(state, [], problems, ended, listed)


def _key_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def _with_notes(
    state: RunState,
    notes: list[str],
    problems: Mapping[str, str],
    ended: Mapping[str, Finished],
    listed: set[str],
) -> RunState:
    workflow_id = state.workflow_id
    extra = tuple(task_storage_key(workflow_id, key) for key in sorted({*ended} - listed))
    notes += [
        f"{task_storage_key(workflow_id, key)}: a record of no task in run.json"
        for key in sorted({*ended, *problems} - listed)
    ]
    notes += [
        f"{task_storage_key(workflow_id, key)}: {text}"
        for key, text in sorted(problems.items())
        if key in listed
    ]
    if not notes and not extra:
        return state
    return replace(state, problems=tuple(notes), extra_records=extra)


def run_from_summary(
    workflow_id: str,
    manifest: Manifest | None,
    lease: LeaseState | None,
    summary: RunSummary,
    *,
    status: str,
    latest: bool,
) -> RunState:
    """A run told by its summary; ``manifest`` (if it is this run's) adds order and steps."""
    own = manifest if manifest is not None and latest else None
    ended = {task.key: task for task in summary.tasks}
    order = list(own.tasks) if own is not None else []
    order += [key for key in ended if key not in set(order)]
    tasks = task_states(order, ended, manifest=own, run_status=summary.status)
    shape = summary.shape or (shape_of(own) if own is not None else None)
    children = {task.key: task for task in summary.children}
    return RunState(
        workflow_id=workflow_id,
        run_id=summary.run_id,
        status=status,
        mode=summary.mode,
        created_at=summary.started_at,
        updated_at=summary.finished_at,
        tasks=with_shape(
            workflow_id,
            summary.status,
            tasks,
            shape,
            children,
            own.outcomes if own is not None else None,
        ),
        lease=lease,
        waits=waits_of(own) if own is not None else (),
        latest=latest,
        waiting=own.waiting if own is not None else {},
        due_at=own.due_at if own is not None else None,
        interrupted=summary.interrupted,
    )


async def read_task(storage: Storage, workflow_id: str, key: str) -> TaskDetail | None:
    """One task of the latest run with its record's metadata and output preview.

    Reads ``run.json``, the lease and that one record, not the whole run
    (except for a failed run recorded before outcomes were, whose failed
    task is found by looking at every record).
    """
    manifest = await read_manifest(storage, workflow_id)
    where = task_storage_key(workflow_id, key)
    blob = await storage.read(where)
    if manifest is not None and not manifest.outcomes and manifest.status != "running":
        run = await read_run(storage, workflow_id, manifest=manifest)
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
                ended[key] = ended_from_record(
                    key, record_times(blob.data, where, workflow_id, key)
                )
            except CheckpointCorrupt as exc:
                problems[key] = str(exc)
        lease = await read_lease(storage, workflow_id)
        run = run_state(workflow_id, manifest, lease, ended, problems)
    task = None if run is None else next((t for t in run.tasks if t.key == key), None)
    if run is None or task is None:
        return None
    if blob is None:
        return TaskDetail(task, run, None, False, None)
    try:
        record, signed = record_meta(blob.data, where, workflow_id, key)
    except CheckpointCorrupt:
        return TaskDetail(task, run, None, False, output_preview(blob.data))
    return TaskDetail(task, run, record, signed, output_preview(blob.data))
