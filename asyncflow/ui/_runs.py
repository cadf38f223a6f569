"""The run views: one run of a workflow, its history, one task, read from storage alone.

Pages render these frozen views and never touch storage themselves, so
what storage records (today ``run.json``, task records and the lease) can
grow without the pages changing. Records are parsed for their metadata only:
an output is never decoded by a serializer (a pickled output is never
unpickled) and a signature is not verified (the viewer needs no key). A
record that cannot be parsed marks its task with the problem instead of
failing the whole page.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from asyncflow._core.checkpoint import _SIG_PREFIX, FORMAT, CheckpointRecord
from asyncflow._core.codec import loads
from asyncflow._core.concurrency import run_all
from asyncflow._core.errors import CheckpointCorrupt
from asyncflow._core.layout import task_prefix, task_storage_key
from asyncflow._core.manifest import Manifest
from asyncflow._core.status import LeaseState, _record_meta, read_lease
from asyncflow._core.storage import Storage
from asyncflow.ui._catalog import read_manifest, run_status
from asyncflow.ui._preview import OutputPreview, preview

__all__ = [
    "RecordCache",
    "RunView",
    "TaskDetail",
    "TaskView",
    "WaitView",
    "edges",
    "load_run",
    "load_task",
]

LIVE = frozenset({"running", "waiting"})


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


def _outcome(manifest: Manifest, key: str, record: bool, first_missing: list[bool]) -> str:
    outcome = manifest.outcomes.get(key)
    if outcome is not None:
        return outcome
    if key in manifest.waiting:
        return "waiting"
    if record:
        return "completed"
    if first_missing[0] and manifest.status in ("failed", "cancelled"):
        first_missing[0] = False
        return manifest.status
    if manifest.status == "running":
        return "running" if key in manifest.running else "pending"
    return "not run"


_MAPPED = re.compile(r"(.+)\[(\d+)\]")


def _parent(key: str) -> str | None:
    """The map a mapped child's key (``fetch[3]``) belongs to."""
    match = _MAPPED.fullmatch(key)
    return match.group(1) if match else None


def _waits(manifest: Manifest) -> tuple[WaitView, ...]:
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


def _error_type(text: str | None) -> str | None:
    """``ValueError`` from a manifest error ``ValueError('boom')``."""
    if not text:
        return None
    head = text.partition("(")[0]
    return head if head.replace(".", "").replace("_", "").isalnum() else None


class _Meta(NamedTuple):
    """What the run page needs of a task record."""

    step: str
    attempts: int
    started_at: float
    finished_at: float


def _meta(data: bytes, where: str, workflow_id: str, key: str) -> _Meta:
    """A record's timing metadata, parsed once; anything irregular gets the full check.

    The full check (``decode_record`` without a serializer) also verifies the
    output's digest; the run page reads a thousand records, the task page
    one, so only the task page pays for that, and here an irregular record
    goes through it for its exact error.
    """
    body = data.partition(b"\n")[2] if data.startswith(_SIG_PREFIX) else data
    try:
        raw = loads(body)
    except ValueError:
        raw = None
    if (
        isinstance(raw, dict)
        and raw.get("asyncflow") == FORMAT
        and raw.get("workflow_id") == workflow_id
        and raw.get("key") == key
        and type(step := raw.get("step")) is str
        and type(attempts := raw.get("attempts")) is int
        and type(started := raw.get("started_at")) is float
        and type(finished := raw.get("finished_at")) is float
        and "output" in raw
    ):
        return _Meta(step, attempts, started, finished)
    record, _ = _record_meta(data, where, workflow_id, key)
    return _Meta(record.step, record.attempts, record.started_at, record.finished_at)


class RecordCache:
    """Task-record metadata already read, per workflow and run, for the next page load.

    Within one run a task's record, once there, does not change: a task
    commits once per run, restoring never rewrites, and what a run
    invalidates it deletes before it starts. So a record seen during a run
    is kept until the listing no longer shows it or ``run.json`` names
    another run; a live page's poll then reads only the records that
    appeared since. At most ``workflows`` runs are kept (least recently
    used first out).
    """

    def __init__(self, workflows: int = 32) -> None:
        self.workflows = workflows
        self._runs: OrderedDict[str, tuple[object, dict[str, _Meta]]] = OrderedDict()

    def known(self, workflow_id: str, run: object) -> dict[str, _Meta]:
        found = self._runs.get(workflow_id)
        if found is None or found[0] != run:
            found = (run, {})
        self._runs[workflow_id] = found
        self._runs.move_to_end(workflow_id)
        while len(self._runs) > self.workflows:
            self._runs.popitem(last=False)
        return found[1]


def _run_identity(manifest: Manifest | None) -> object:
    """What tells one run from the next in ``run.json``: its run id (else its times)."""
    if manifest is None:
        return None
    return manifest.run_id or (manifest.created_at, manifest.updated_at)


async def _records(
    storage: Storage, workflow_id: str, known: dict[str, _Meta] | None = None
) -> tuple[dict[str, _Meta], dict[str, str]]:
    """Every task record's metadata: one listing, then the records not ``known`` yet.

    ``known`` is updated in place: records gone from the listing leave it.
    """
    prefix = task_prefix(workflow_id)
    names = [name async for name in storage.list(prefix)]
    found = {
        name[len(prefix) : -len(".json")]: name
        for name in names
        if name.endswith(".json") and "/" not in name[len(prefix) :]
    }
    records = {} if known is None else known
    for gone in [key for key in records if key not in found]:
        del records[gone]
    problems: dict[str, str] = {}
    pending = iter([(key, name) for key, name in found.items() if key not in records])

    async def worker() -> None:
        for key, name in pending:
            blob = await storage.read(name)
            if blob is None:
                continue
            try:
                records[key] = _meta(blob.data, name, workflow_id, key)
            except CheckpointCorrupt as exc:
                problems[key] = str(exc)

    if len(found) > len(records):
        await run_all([worker] * min(32, len(found) - len(records)))
    return records, problems


async def load_run(
    storage: Storage, workflow_id: str, cache: RecordCache | None = None
) -> RunView | None:
    """The latest run of ``workflow_id``, or None if storage has nothing of it.

    A corrupt ``run.json`` raises ``CheckpointCorrupt`` (nothing can be
    drawn without it); a corrupt task record only marks its task. With a
    ``cache``, records already read during this run are not read again.
    """
    manifest = await read_manifest(storage, workflow_id)
    known = None if cache is None else cache.known(workflow_id, _run_identity(manifest))
    records, problems = await _records(storage, workflow_id, known)
    if manifest is None and not records and not problems:
        return None
    lease = await read_lease(storage, workflow_id)
    return _build(workflow_id, manifest, lease, dict(records), problems)


def _build(
    workflow_id: str,
    manifest: Manifest | None,
    lease: LeaseState | None,
    records: dict[str, _Meta],
    problems: dict[str, str],
) -> RunView:
    if manifest is None:
        manifest = Manifest(
            workflow_id=workflow_id,
            status="unknown",
            fingerprint=None,
            mode="sequential",
            tasks=tuple(sorted({*records, *problems})),
            created_at=0.0,
            updated_at=0.0,
        )
        known = False
    else:
        known = True
    steps = manifest.steps if len(manifest.steps) == len(manifest.tasks) else ()
    first_missing = [True]
    tasks: list[TaskView] = []
    for index, key in enumerate(manifest.tasks):
        record = records.get(key)
        error = manifest.errors.get(key)
        step = steps[index] if steps else record.step if record is not None else key
        tasks.append(
            TaskView(
                key=key,
                step=step,
                status=_outcome(manifest, key, record is not None, first_missing),
                index=index,
                attempts=record.attempts if record is not None else None,
                started_at=record.started_at if record is not None else None,
                finished_at=record.finished_at if record is not None else None,
                error=error,
                error_type=_error_type(error),
                checkpoint=record is not None,
                problem=problems.get(key),
                parent=_parent(key),
            )
        )
    listed = set(manifest.tasks) | {
        f"{key}.{index}" for key, count in manifest.children.items() for index in range(count)
    }
    extra = [
        f"{task_storage_key(workflow_id, key)}: a record of no task in run.json"
        for key in sorted({*records, *problems} - listed)
    ]
    extra += [
        f"{task_storage_key(workflow_id, key)}: {text}"
        for key, text in sorted(problems.items())
        if key in listed
    ]
    if not known:
        extra.insert(0, f"{workflow_id}/run.json is missing: showing the task records alone")
    from asyncflow.ui._shape import with_shape  # the shape module builds on these views

    view = RunView(
        workflow_id=workflow_id,
        waits=_waits(manifest) if known else (),
        run_id=manifest.run_id,
        status=run_status(manifest, lease) if known else "unknown",
        mode=manifest.mode if known else None,
        created_at=manifest.created_at if known else None,
        updated_at=manifest.updated_at if known else None,
        tasks=tuple(tasks),
        lease=lease,
        problems=tuple(extra),
    )
    return with_shape(view, manifest if known else None, records)


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
        records: dict[str, _Meta] = {}
        problems: dict[str, str] = {}
        if blob is not None:
            try:
                records[key] = _meta(blob.data, where, workflow_id, key)
            except CheckpointCorrupt as exc:
                problems[key] = str(exc)
        run = _build(
            workflow_id, manifest, await read_lease(storage, workflow_id), records, problems
        )
    task = None if run is None else next((t for t in run.tasks if t.key == key), None)
    if run is None or task is None:
        return None
    if blob is None:
        return TaskDetail(task, run, None, False, None)
    try:
        record, signed = _record_meta(blob.data, where, workflow_id, key)
    except CheckpointCorrupt:
        return TaskDetail(task, run, None, False, preview(blob.data))
    return TaskDetail(task, run, record, signed, preview(blob.data))
