"""Every workflow of a storage, as a listing shows it: from each ``run.json`` alone.

``list_workflows`` costs one delimiter listing of the storage root (the
workflow ids) plus one read of each ``run.json`` (and of the lease, only for
a run that says it is ``running``): never a task record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncflow._kernel.capabilities import list_children, read_many
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.errors import CheckpointCorrupt, ConfigurationError
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.storage import Storage
from asyncflow.reading._leases import read_lease, seen_status

__all__ = ["WorkflowInfo", "list_workflows", "workflow_ids"]


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """One line of ``asyncflow list``: a workflow's latest run, from its ``run.json``."""

    workflow_id: str
    status: str
    mode: str | None
    run_id: str | None
    tasks: int
    outcomes: dict[str, int]
    created_at: float | None
    updated_at: float | None
    started_at: float | None
    running: tuple[str, ...] = ()
    problem: str | None = None
    #: The flow's name (``AsyncFlow(name=...)``), what workers match queued runs by.
    flow: str | None = None
    #: A parked run: when its earliest wait is due by the clock (``None``: only a signal).
    due_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "status": self.status,
            "mode": self.mode,
            "run_id": self.run_id,
            "tasks": self.tasks,
            "outcomes": self.outcomes,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "running": list(self.running),
            "problem": self.problem,
            "flow": self.flow,
            "due_at": self.due_at,
        }


def _is_id(name: str) -> bool:
    try:
        validate_id(name, "workflow id")
    except ConfigurationError:
        return False
    return True


async def workflow_ids(storage: Storage) -> list[str]:
    """The top-level folders of the storage whose names are valid workflow ids."""
    return [
        segment[:-1]
        async for segment in list_children(storage, "")
        if segment.endswith("/") and _is_id(segment[:-1])
    ]


async def _info(storage: Storage, workflow_id: str, data: bytes) -> WorkflowInfo:
    where = manifest_key(workflow_id)
    try:
        manifest = Manifest.decode(data, where)
    except CheckpointCorrupt as exc:
        return WorkflowInfo(
            workflow_id, "unreadable", None, None, 0, {}, None, None, None, problem=str(exc)
        )
    status = manifest.status
    if status == "running":
        status = seen_status(status, await read_lease(storage, workflow_id))
    counts: dict[str, int] = {}
    for outcome in manifest.outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return WorkflowInfo(
        workflow_id=workflow_id,
        status=status,
        mode=manifest.mode,
        run_id=manifest.run_id,
        tasks=len(manifest.tasks),
        outcomes=counts,
        created_at=manifest.created_at,
        updated_at=manifest.updated_at,
        started_at=manifest.started_at,
        running=manifest.running,
        flow=manifest.flow,
        due_at=manifest.due_at,
    )


async def list_workflows(
    storage: Storage, *, ids: Sequence[str] | None = None, concurrency: int = 32
) -> list[WorkflowInfo]:
    """Every workflow with a ``run.json``, in id order (a folder without one is not listed)."""
    names = list(ids) if ids is not None else await workflow_ids(storage)
    blobs = await read_many(
        storage, [manifest_key(name) for name in names], concurrency=concurrency
    )
    found: dict[str, WorkflowInfo] = {}
    pending = iter(zip(names, blobs, strict=True))

    async def worker() -> None:
        for name, blob in pending:
            if blob is not None:
                found[name] = await _info(storage, name, blob.data)

    if names:
        await run_all([worker] * min(concurrency, len(names)))
    return [found[name] for name in sorted(found)]
