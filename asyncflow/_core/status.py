"""What a workflow's storage says about its latest run, read without running anything.

Storage holds a record only for a completed task, so the per-task picture
comes from the run manifest (``run.json``): its ``tasks`` list every key in
flow order, and since this version its ``outcomes`` say what happened to
each key in the latest finished run (``skipped`` = restored from its
checkpoint) and its ``errors`` why a key failed.

Manifests written before ``outcomes`` existed (or while a run is going on)
fall back to the records: a key with a record is ``completed``; in a
``failed`` (``cancelled``) run the first key without a record is ``failed``
(``cancelled``) and the later ones ``not run``.

Records are parsed for their metadata only: the output is never decoded
(no serializer, so a pickled output is never unpickled) and a signature is
not verified (no key is needed to look).

A live run is read like the viewer reads it: its ``run.json`` carries a
progress index of the tasks that ended (``asyncflow._core.progress``), so
``read_run`` reads ``run.json`` and the lease and no task record at all.
Records are listed and read only where the index cannot tell: a crashed run
(its index may miss its last second), tasks beyond the index's cap, and a
``run.json`` without an index (an older version, an ended run), and then
only the records the index does not name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asyncflow._core.checkpoint import CheckpointRecord
from asyncflow._core.concurrency import run_all
from asyncflow._core.layout import manifest_key, task_prefix, task_storage_key
from asyncflow._core.lease import LeaseRecord, lease_key
from asyncflow._core.manifest import Manifest
from asyncflow._core.metadata import record_meta
from asyncflow._core.outcomes import OUTCOMES, Outcome
from asyncflow._core.storage import Storage

if TYPE_CHECKING:
    from asyncflow._core.progress import Finished

__all__ = [
    "OUTCOMES",
    "LeaseState",
    "Outcome",
    "RunState",
    "TaskState",
    "read_run",
    "seen_status",
]


def seen_status(status: str, lease: LeaseState | None) -> str:
    """``running`` as a reader reports it: ``crashed`` when no live lease backs it."""
    if status == "running" and (lease is None or not lease.live):
        return "crashed"
    return status


@dataclass(frozen=True, slots=True)
class TaskState:
    key: str
    step: str
    status: Outcome
    task_id: int | None = None
    attempts: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    checkpoint: bool = False
    #: ``None`` when the record was not read (the live run's progress index told this task)
    signed: bool | None = False
    depends_on: tuple[str, ...] = ()
    kind: str = "step"
    over: str | None = None
    children: int | None = None

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
            "task_id": self.task_id,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "error": self.error,
            "checkpoint": self.checkpoint,
            "signed": self.signed,
            "depends_on": list(self.depends_on),
            "kind": self.kind,
            "over": self.over,
            "children": self.children,
        }


@dataclass(frozen=True, slots=True)
class LeaseState:
    runner_id: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float
    released: bool
    holder_gone: bool

    @property
    def live(self) -> bool:
        """Held by a runner that may still be running (it blocks another runner)."""
        return not self.released and self.expires_at > time.time() and not self.holder_gone

    def to_json(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "runner_id": self.runner_id,
            "host": self.host,
            "pid": self.pid,
            "acquired_at": self.acquired_at,
            "expires_at": self.expires_at,
            "released": self.released,
            "holder_gone": self.holder_gone,
        }


@dataclass(frozen=True, slots=True)
class RunState:
    """The latest run of one workflow, as storage records it."""

    workflow_id: str
    status: str
    mode: str | None
    created_at: float | None
    updated_at: float | None
    tasks: tuple[TaskState, ...]
    lease: LeaseState | None
    extra_records: tuple[str, ...] = ()
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    due_at: float | None = None

    run_id: str | None = None
    running: tuple[str, ...] = ()
    interrupted: tuple[str, ...] = ()

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
            "tasks": [task.to_json() for task in self.tasks],
            "extra_records": list(self.extra_records),
            "waiting": self.waiting,
            "due_at": self.due_at,
        }


async def read_lease(storage: Storage, workflow_id: str) -> LeaseState | None:
    where = lease_key(workflow_id)
    blob = await storage.read(where)
    if blob is None:
        return None
    record = LeaseRecord.decode(blob.data, where)
    return LeaseState(
        runner_id=record.runner_id,
        host=record.host,
        pid=record.pid,
        acquired_at=record.acquired_at,
        expires_at=record.expires_at,
        released=record.released,
        holder_gone=record.holder_is_dead_here(),
    )


async def read_run(storage: Storage, workflow_id: str) -> RunState | None:
    """The state of ``workflow_id`` in ``storage``, or None if it has no manifest nor records.

    A record that cannot be parsed raises ``CheckpointCorrupt`` naming it, as
    does a malformed progress index in ``run.json``.
    """
    from asyncflow._core.progress import progress_of  # progress imports this module

    where = manifest_key(workflow_id)
    blob = await storage.read(where)
    manifest = Manifest.decode(blob.data, where) if blob is not None else None
    lease = await read_lease(storage, workflow_id)
    status = seen_status(manifest.status, lease) if manifest is not None else "unknown"
    live = manifest is not None and manifest.status == "running"
    progress = progress_of(manifest) if manifest is not None and live else None
    indexed: Mapping[str, Finished] = progress.tasks if progress is not None else {}
    records: dict[str, tuple[CheckpointRecord, bool]] = {}
    if progress is None or not progress.complete or status != "running":
        names = [name async for name in storage.list(task_prefix(workflow_id))]
        if manifest is None and not names:
            return None
        records = await _read_records(storage, workflow_id, names, skip=indexed)
    keys = manifest.tasks if manifest is not None else tuple(sorted(records, key=_key_order))
    states = _states(manifest, keys, records, indexed)
    maps = {key for key, kind in manifest.kinds.items() if kind == "map"} if manifest else set()
    extra = tuple(
        sorted(
            task_storage_key(workflow_id, k)
            for k in {*records, *indexed}
            if k not in keys and not _is_child(k, maps)
        )
    )
    return RunState(
        workflow_id=workflow_id,
        status=status,
        mode=manifest.mode if manifest is not None else None,
        created_at=manifest.created_at if manifest is not None else None,
        updated_at=manifest.updated_at if manifest is not None else None,
        tasks=states,
        lease=lease,
        extra_records=extra,
        waiting=manifest.waiting if manifest is not None else {},
        due_at=manifest.due_at if manifest is not None else None,
        run_id=manifest.run_id if manifest is not None else None,
        running=manifest.running if manifest is not None else (),
        interrupted=manifest.interrupted if manifest is not None else (),
    )


async def _read_records(
    storage: Storage, workflow_id: str, names: list[str], *, skip: Mapping[str, object]
) -> dict[str, tuple[CheckpointRecord, bool]]:
    """The metadata of each listed task record whose key is not in ``skip``, 16 at once."""
    prefix = task_prefix(workflow_id)
    found = {
        name[len(prefix) : -len(".json")]: name
        for name in names
        if name.endswith(".json") and "/" not in name[len(prefix) :]
    }
    wanted = [(key, name) for key, name in found.items() if key not in skip]
    records: dict[str, tuple[CheckpointRecord, bool]] = {}
    pending = iter(wanted)

    async def worker() -> None:
        for key, name in pending:
            record_blob = await storage.read(name)
            if record_blob is not None:
                records[key] = record_meta(record_blob.data, name, workflow_id, key)

    if wanted:
        await run_all([worker] * min(16, len(wanted)))
    return records


def _is_child(key: str, maps: set[str]) -> bool:
    """Whether ``key`` is a child record (``fetch.3``) of one of the ``maps``."""
    head, dot, index = key.rpartition(".")
    return bool(dot) and index.isdigit() and head in maps


def _as_outcome(value: str | None) -> Outcome | None:
    for outcome in OUTCOMES:
        if value == outcome:
            return outcome
    return None


def _key_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def _states(
    manifest: Manifest | None,
    keys: Sequence[str],
    records: dict[str, tuple[CheckpointRecord, bool]],
    indexed: Mapping[str, Finished] | None = None,
) -> tuple[TaskState, ...]:
    status = manifest.status if manifest is not None else "unknown"
    outcomes = manifest.outcomes if manifest is not None else {}
    errors = manifest.errors if manifest is not None else {}
    steps = manifest.steps if manifest is not None and len(manifest.steps) == len(keys) else ()
    fallback: Outcome = "cancelled" if status == "cancelled" else "failed"
    first_missing = status in ("failed", "cancelled")
    states: list[TaskState] = []
    for index, key in enumerate(keys):
        entry = indexed.get(key) if indexed else None
        if entry is not None:
            states.append(_indexed_state(manifest, key, index, entry, steps))
            continue
        found = records.get(key)
        record = found[0] if found is not None else None
        outcome = _as_outcome(outcomes.get(key))
        if outcome is None:
            if record is not None:
                outcome = "completed"
            elif first_missing:
                outcome, first_missing = fallback, False
            else:
                outcome = "not run"
        step = steps[index] if steps else record.step if record is not None else key
        states.append(
            TaskState(
                key=key,
                step=step,
                status=outcome,
                task_id=record.task_id if record is not None else index,
                attempts=record.attempts if record is not None else None,
                started_at=record.started_at if record is not None else None,
                finished_at=record.finished_at if record is not None else None,
                error=errors.get(key),
                checkpoint=record is not None,
                signed=found[1] if found is not None else False,
                depends_on=manifest.depends_on.get(key, ()) if manifest is not None else (),
                kind=manifest.kinds.get(key, "step") if manifest is not None else "step",
                over=manifest.over.get(key) if manifest is not None else None,
                children=manifest.children.get(key) if manifest is not None else None,
            )
        )
    return tuple(states)


def _indexed_state(
    manifest: Manifest | None, key: str, index: int, entry: Finished, steps: Sequence[str]
) -> TaskState:
    """A task the live run's progress index tells: its record is not read."""
    outcome = _as_outcome(entry.outcome) or "completed"
    error = entry.error
    return TaskState(
        key=key,
        step=steps[index] if steps else entry.step or key,
        status=outcome,
        task_id=index,
        attempts=entry.attempts,
        started_at=entry.started_at,
        finished_at=entry.finished_at,
        error=f"{error.type}: {error.message}" if error is not None else None,
        checkpoint=outcome in ("completed", "skipped"),
        signed=None,
        depends_on=manifest.depends_on.get(key, ()) if manifest is not None else (),
        kind=manifest.kinds.get(key, "step") if manifest is not None else "step",
        over=manifest.over.get(key) if manifest is not None else None,
        children=manifest.children.get(key) if manifest is not None else None,
    )
