"""Steering a workflow from its records: reset from a task, fork into a new workflow.

Both read the flow's shape from ``run.json`` (mode, keys, groups), never
from code, so they work from the command line with nothing imported.

``reset(storage, id, from_key)`` deletes the checkpoints of ``from_key`` and
of every task that depends on it (``runs.dependents``), holding the
workflow's lease so no runner is mid-run meanwhile; the next resume re-runs
them. ``fork(storage, id, new_id, from_key=...)`` copies the checkpoints of
the tasks that do *not* depend on ``from_key`` (all of them without it)
into a new workflow, which a resume then continues: DBOS's fork, Inngest's
rerun-from-step. Fork reads the source's records through its pack where the
pack is current, and packs the copies for the new workflow's first resume.

A record names its workflow and is checked on decode, so fork rewrites
``workflow_id`` in each copy, keeping the output's bytes (and so its digest)
as they were. A signed record's signature covers that field: forking
signed records needs the ``signing_key``, which first verifies each source
record (a tampered one is refused, never laundered into a validly signed
copy) and then signs the copy. Unsigned records are copied unsigned; giving
a key for them is refused rather than signing what was never verified.
"""

from __future__ import annotations

import time
from dataclasses import replace

from asyncflow._core.config import DEFAULT_PACK_MIN_RECORDS
from asyncflow._core.index import write_manifest
from asyncflow._core.packing import write_pack
from asyncflow._core.records import rearm_waits
from asyncflow._kernel.blobs import blob_prefix, collect_garbage
from asyncflow._kernel.checkpoint import _SIG_PREFIX, sign, verify
from asyncflow._kernel.codec import dumps, loads
from asyncflow._kernel.decoding import output_tail
from asyncflow._kernel.errors import CheckpointCorrupt, ConfigurationError
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.layout import is_own_key, manifest_key, task_prefix, task_storage_key
from asyncflow._kernel.lease import Lease
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.shape import dependents, graph_edges
from asyncflow._kernel.snapshot import TaskSnapshot, read_tasks, take_snapshot
from asyncflow._kernel.storage import Storage
from asyncflow._kernel.summary import RunSummary, new_run_id, run_summary_key
from asyncflow.reading import map_child

__all__ = ["RESET", "fork", "reset"]

_LEASE_TTL = 60.0
#: ``run.json``'s status after ``reset``: prepared for a resume that re-runs tasks.
RESET = "reset"


async def _manifest(storage: Storage, workflow_id: str) -> Manifest:
    where = manifest_key(workflow_id)
    blob = await storage.read(where)
    if blob is None:
        raise ConfigurationError(f"workflow {workflow_id} has no run.json in {storage!r}")
    return Manifest.decode(blob.data, where)


def _stale(manifest: Manifest, from_key: str) -> list[str]:
    return dependents(
        from_key,
        mode=manifest.mode,
        keys=manifest.tasks,
        groups=manifest.groups,
        depends_on=graph_edges(manifest.tasks, manifest.depends_on, manifest.over),
    )


def _maps(manifest: Manifest) -> set[str]:
    return {key for key, kind in manifest.kinds.items() if kind == "map"}


def _child_of(key: str, maps: set[str]) -> str | None:
    """The map whose child record ``key`` is (``fetch.3`` -> ``fetch``), else None."""
    found = map_child(key, maps)
    return found[0] if found is not None else None


async def reset(storage: Storage, workflow_id: str, from_key: str) -> list[str]:
    """Make the next resume re-run ``from_key`` and what depends on it; returns those keys.

    Holds the workflow's lease while it deletes (``WorkflowLocked`` if a
    runner is live). ``run.json`` then shows those tasks as ``not run`` and
    the run as ``reset`` (its old ``completed``/``failed``/... no longer
    says what a resume will do), except a ``waiting`` run: it stays
    ``waiting``, parked on the same armed waits, so a worker still resumes it
    when it is due (and then re-runs the reset tasks). A durable wait among
    the reset tasks is re-armed, and the signal it consumed is discarded:
    the re-run waits and asks again.
    """
    validate_id(workflow_id, "workflow_id")
    manifest = await _manifest(storage, workflow_id)
    stale = _stale(manifest, from_key)
    lease = Lease(storage, workflow_id, ttl=_LEASE_TTL, renew_every=_LEASE_TTL / 3)
    await lease.acquire()
    try:
        manifest = await _manifest(storage, workflow_id)  # a run may have ended meanwhile
        maps = _maps(manifest)
        prefix = task_prefix(workflow_id)

        def is_stale(key: str) -> bool:
            return key in stale or _child_of(key, maps) in stale

        deleted: set[str] = set()
        for name in [n async for n in storage.list(prefix)]:
            key = name[len(prefix) : -len(".json")] if name.endswith(".json") else ""
            if is_stale(key):
                await storage.delete(name)
                deleted.add(key)
        await rearm_waits(storage, workflow_id, is_stale, deleted)  # so a wait asks again
        await collect_garbage(storage, workflow_id)  # blobs only the deleted records used
        outcomes = dict(manifest.outcomes)
        errors = dict(manifest.errors)
        skipped = dict(manifest.skipped)
        for key in stale:
            if key in outcomes:
                outcomes[key] = "not run"
            errors.pop(key, None)
            skipped.pop(key, None)
        status = "waiting" if manifest.status == "waiting" else RESET
        reset_run = manifest.replace(
            status=status,
            outcomes=outcomes,
            errors=errors,
            skipped=skipped,
            running=(),
            interrupted=manifest.interrupted if status == "waiting" else (),
            progress=None,
        )
        await write_manifest(storage, reset_run, previous=manifest)
    finally:
        await lease.release()
    return stale


async def _records(
    storage: Storage, snapshot: TaskSnapshot, names: list[str]
) -> list[bytes | None]:
    """The source records: through the pack where it is current, else one read each."""
    if snapshot.tokens is not None:
        return await read_tasks(storage, snapshot, names, concurrency=16)
    found: list[bytes | None] = []
    for name in names:
        blob = await storage.read(name)
        found.append(None if blob is None else blob.data)
    return found


def _rewrite(data: bytes, where: str, source: str, target: str, signing_key: bytes | None) -> bytes:
    signed = data.startswith(_SIG_PREFIX)
    if signing_key is not None and not signed:
        raise ConfigurationError(
            f"{where} is not signed: fork copies unsigned records without a signing_key"
        )
    body = verify(data, signing_key, where)
    try:
        raw = loads(body)
    except ValueError as exc:
        raise CheckpointCorrupt(f"{where} is not valid JSON: {exc}", key=where) from exc
    if not isinstance(raw, dict) or raw.get("workflow_id") != source or "output" not in raw:
        raise CheckpointCorrupt(f"{where} is not a checkpoint record of {source}", key=where)
    header = {name: value for name, value in raw.items() if name != "output"}
    header["workflow_id"] = target
    tail = output_tail(body)
    if tail is None:
        copied = dumps({**header, "output": raw["output"]})
    else:
        copied = dumps(header)[:-1] + b',"output":' + tail + b"}"
    return sign(copied, signing_key) if signed else copied


async def fork(
    storage: Storage,
    workflow_id: str,
    new_id: str,
    *,
    from_key: str | None = None,
    signing_key: bytes | None = None,
) -> list[str]:
    """A new workflow ``new_id`` with ``workflow_id``'s checkpoints before ``from_key``.

    Returns the task keys copied. ``new_id`` must have no records yet; its
    lease is held while copying. Resume the new workflow (same code, with
    ``workflow_id=new_id``) to run the rest. Content-addressed blobs under
    ``blobs/`` are copied too.
    """
    validate_id(workflow_id, "workflow_id")
    validate_id(new_id, "new workflow id")
    if new_id == workflow_id:
        raise ConfigurationError("fork needs a new workflow id, not the same one")
    manifest = await _manifest(storage, workflow_id)
    skipped = set(_stale(manifest, from_key)) if from_key is not None else set()
    if [name async for name in storage.list(f"{new_id}/")]:
        raise ConfigurationError(
            f"workflow {new_id} already has records; clear it first (asyncflow clear {new_id})"
        )
    lease = Lease(storage, new_id, ttl=_LEASE_TTL, renew_every=_LEASE_TTL / 3)
    await lease.acquire()
    try:
        prefix = task_prefix(workflow_id)
        maps = _maps(manifest)
        copied: list[str] = []
        snapshot = await take_snapshot(storage, workflow_id, signing_key=signing_key)
        names = snapshot.tokens or [n async for n in storage.list(prefix)]
        chosen: list[tuple[str, str]] = []
        for name in sorted(names):
            key = name[len(prefix) : -len(".json")] if name.endswith(".json") else ""
            parent = _child_of(key, maps)
            if not key or "/" in key or key in skipped or parent in skipped:
                continue
            if key not in manifest.tasks and parent is None:
                continue
            chosen.append((name, key))
        found = await _records(storage, snapshot, [name for name, _ in chosen])
        landed: dict[str, bytes] = {}
        for (name, key), data in zip(chosen, found, strict=True):
            if data is None:
                continue
            data = _rewrite(data, name, workflow_id, new_id, signing_key)
            lease.ensure()
            where = task_storage_key(new_id, key)
            await storage.write(where, data)
            landed[where] = data
            copied.append(key)
        blobs = blob_prefix(workflow_id)
        for name in [n async for n in storage.list(blobs) if is_own_key(workflow_id, n)]:
            blob = await storage.read(name)
            if blob is not None:
                await storage.write(f"{new_id}/blobs/{name[len(blobs) :]}", blob.data)
        now = time.time()
        run_id = new_run_id(now)
        order = [key for key in manifest.tasks if key in copied]
        await write_pack(
            storage,
            new_id,
            run_id,
            "forked",
            landed=landed,
            snapshot=None,
            signing_key=signing_key,
            min_records=DEFAULT_PACK_MIN_RECORDS,
        )
        summary = RunSummary(
            workflow_id=new_id,
            run_id=run_id,
            status="forked",
            mode=manifest.mode,
            resume=False,
            started_at=now,
            finished_at=now,
            host="",
            pid=0,
            rerun_from=from_key,
            forked_from=workflow_id,
        )
        await storage.write(run_summary_key(new_id, run_id), summary.encode())
        forked = replace(
            manifest,
            workflow_id=new_id,
            status="forked",
            outcomes={key: ("completed" if key in copied else "not run") for key in manifest.tasks},
            errors={},
            skipped={},
            run_id=run_id,
            running=(),
            interrupted=(),
            host=None,
            pid=None,
            started_at=now,
            created_at=now,
            updated_at=now,
            parent=None,  # a fork is no child of its source's parent
        )
        await write_manifest(storage, forked)
    finally:
        await lease.release()
    return order
