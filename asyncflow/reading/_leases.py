"""Who runs a workflow now: its lease as a reader sees it, and the one "crashed" rule.

``run.json`` says ``running`` from the moment a run starts until it ends; a
runner that is killed never gets to say otherwise. So a reader decides: a
run is ``running`` only while a live lease backs it, and ``crashed``
otherwise. The same holds for a run summary left ``running``: unless it is
the live run of ``run.json``, its runner is gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from asyncflow._kernel.layout import lease_key, manifest_key
from asyncflow._kernel.lease import LeaseRecord
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.storage import Storage

__all__ = ["LeaseState", "live_run_id", "read_lease", "seen_status"]


@dataclass(frozen=True, slots=True)
class LeaseState:
    """A workflow's ``lease.json``: which runner holds it, until when, and whether it is gone."""

    runner_id: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float
    released: bool
    #: The holder ran on this host and its process is gone (its pid and start time).
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


async def read_lease(storage: Storage, workflow_id: str) -> LeaseState | None:
    """The lease of ``workflow_id``, or ``None``; ``CheckpointCorrupt`` if malformed."""
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


def seen_status(status: str, lease: LeaseState | None, *, live: bool | None = None) -> str:
    """``status`` as a reader reports it: ``running`` without a live runner is ``crashed``.

    ``lease`` backs the ``running`` of ``run.json``; for a run summary pass
    ``live``: whether it is the run ``run.json`` names and a live lease backs.
    """
    if status != "running":
        return status
    alive = live if live is not None else lease is not None and lease.live
    return "running" if alive else "crashed"


async def live_run_id(storage: Storage, workflow_id: str) -> str | None:
    """The run id of the run going on now (``run.json`` running under a live lease), or None."""
    where = manifest_key(workflow_id)
    blob = await storage.read(where)
    if blob is None:
        return None
    manifest = Manifest.decode(blob.data, where)
    if manifest.status != "running":
        return None
    if seen_status(manifest.status, await read_lease(storage, workflow_id)) != "running":
        return None
    return manifest.run_id
