"""A workflow's records in bulk: load the ones a run needs, clear the ones it owns.

A reset also forgets the armed waits of the tasks it re-runs (``rearm_waits``).

Loading reads many keys at once (``read_many`` where the backend has it,
bounded concurrency otherwise) because resume cost is round trips on object
stores; clearing asks ``layout.is_own_key`` before every delete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from asyncflow._kernel.capabilities import Capabilities, delete_many, read_many
from asyncflow._kernel.checkpoint import CheckpointRecord
from asyncflow._kernel.codec import loads
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.decoding import decode_record
from asyncflow._kernel.errors import CheckpointCorrupt
from asyncflow._kernel.layout import (
    is_own_key,
    manifest_key,
    pack_key,
    signal_key,
    task_prefix,
    task_storage_key,
    wait_prefix,
    workflow_keys,
)
from asyncflow._kernel.serializers import Serializer
from asyncflow._kernel.snapshot import TaskSnapshot, read_tasks
from asyncflow._kernel.storage import Storage

__all__ = ["clear_for_new_run", "clear_workflow", "load_records", "rearm_waits"]


async def load_records(
    storage: Storage,
    workflow_id: str,
    keys: Iterable[str],
    *,
    serializers: dict[str, Serializer],
    signing_key: bytes | None = None,
    concurrency: int = 32,
    snapshot: TaskSnapshot | None = None,
) -> dict[str, CheckpointRecord]:
    """All records of ``keys`` that exist, decoded and verified.

    With a ``snapshot`` that has tokens (``take_snapshot``), each record comes
    from the pack while the snapshot's listing proves the packed copy
    current, and from its own key otherwise (``read_tasks``). Without one:
    one listing, then bounded concurrent reads; a storage that declares
    ``read_many`` (``StorageFile``: one thread hop for many files) is asked
    for every wanted key, no listing: a missing file costs one failed open,
    and a directory or a FIFO where a record should be is refused by the
    read instead of being left out of a listing as if there were no
    checkpoint.
    """
    wanted = {task_storage_key(workflow_id, key): key for key in keys}
    if snapshot is not None and snapshot.tokens is not None:
        names = list(wanted)
        found = await read_tasks(storage, snapshot, names, concurrency=concurrency)
    else:
        if Capabilities.of(storage).read_many is not None:
            names = list(wanted)
        else:
            prefix = task_prefix(workflow_id)
            names = [name async for name in storage.list(prefix) if name in wanted]
        found = [
            None if blob is None else blob.data
            for blob in await read_many(storage, names, concurrency=concurrency)
        ]
    records: dict[str, CheckpointRecord] = {}
    for where, data in zip(names, found, strict=True):
        if data is not None:
            key = wanted[where]
            try:
                records[key] = decode_record(
                    data,
                    where=where,
                    workflow_id=workflow_id,
                    key=key,
                    serializers=serializers,
                    signing_key=signing_key,
                )
            except CheckpointCorrupt as exc:
                if snapshot is None or snapshot.packed(where) is None:
                    raise
                pack = pack_key(workflow_id)
                raise CheckpointCorrupt(
                    f"pack {pack}: its copy of {where} is bad ({exc}); delete the pack to"
                    " resume from the task records themselves",
                    key=pack,
                ) from exc
    return await _resolve_blobs(storage, workflow_id, records, serializers, concurrency)


async def _resolve_blobs(
    storage: Storage,
    workflow_id: str,
    records: dict[str, CheckpointRecord],
    serializers: dict[str, Serializer],
    concurrency: int,
) -> dict[str, CheckpointRecord]:
    offloaded = [key for key, record in records.items() if record.blob is not None]
    if not offloaded:
        return records
    from asyncflow._kernel.blobs import resolve

    pending = iter(offloaded)

    async def worker() -> None:
        for key in pending:
            where = task_storage_key(workflow_id, key)
            records[key] = await resolve(storage, records[key], where, serializers)

    await run_all([worker] * max(1, min(concurrency, len(offloaded))))
    return records


async def clear_workflow(storage: Storage, workflow_id: str, *, tasks_only: bool = False) -> int:
    """Delete a workflow's own records (the lease is never touched); returns how many.

    Only keys of the layout are deleted (``layout.is_own_key``): a file that
    is not an asyncflow record stays, whatever folder it sits in. Blobs
    (offloaded outputs) go too, even with ``tasks_only``: with the task
    records gone nothing uses them. They are deleted after the other records,
    so an interrupted clear never leaves a record whose blob is gone, and
    ``run.json`` goes last, so an interrupted clear is still found as a
    workflow.
    """
    names = await workflow_keys(storage, workflow_id, tasks_only=tasks_only)
    blobs = f"{workflow_id}/blobs/"
    if tasks_only:
        names += [name async for name in storage.list(blobs) if is_own_key(workflow_id, name)]
    manifest = manifest_key(workflow_id)
    await delete_many(storage, [n for n in names if n != manifest and not n.startswith(blobs)])
    await delete_many(storage, [n for n in names if n.startswith(blobs)])
    if manifest in names:
        await storage.delete(manifest)
    return len(names)


_NEW_RUN_CLEARS = ("tasks/", "waits/", "signals/", "pack/")


async def clear_for_new_run(storage: Storage, workflow_id: str) -> int:
    """What a fresh (non-resume) run deletes, found with one listing; returns how many.

    The checkpoint records, their pack, armed waits and signals, then the blobs (after
    the records that use them, as in ``clear_workflow``). One listing of
    ``{workflow_id}/`` instead of one per folder: on an object store each
    listing is a round trip, and a workflow start paid four. The run history
    (``runs/``), ``run.json`` and the lease are listed but never touched.

    A workflow's first start (no ``run.json`` yet) keeps its signals: they
    were sent for it (``signal(..., before_start=True)``), not left by an
    earlier execution.
    """
    prefix = f"{workflow_id}/"
    names = [name async for name in storage.list(prefix) if is_own_key(workflow_id, name)]
    blobs = f"{prefix}blobs/"
    first = manifest_key(workflow_id) not in names
    clears = _NEW_RUN_CLEARS[:2] if first else _NEW_RUN_CLEARS
    await delete_many(storage, [n for n in names if n[len(prefix) :].startswith(clears)])
    await delete_many(storage, [n for n in names if n.startswith(blobs)])
    return sum(1 for n in names if n[len(prefix) :].startswith((*clears, "blobs/")))


async def rearm_waits(
    storage: Storage, workflow_id: str, stale: Callable[[str], bool], consumed: set[str]
) -> list[str]:
    """Forget the armed waits of the keys ``stale`` accepts (``reset --from``, ``rerun_from``).

    The next run arms them anew (a sleep counts from then; a signal wait's
    deadline too), and the signal a wait in ``consumed`` (its task had
    completed) took is deleted, so the run asks again instead of completing
    at once with the old payload. Returns the keys re-armed.
    """
    prefix = wait_prefix(workflow_id)
    rearmed = []
    for name in [n async for n in storage.list(prefix) if is_own_key(workflow_id, n)]:
        key = name[len(prefix) : -len(".json")]
        if not stale(key):
            continue
        if key in consumed:
            blob = await storage.read(name)
            raw = _loads_or_none(blob.data if blob is not None else None)
            spec = raw.get("wait") if isinstance(raw, dict) else None
            if isinstance(spec, dict) and spec.get("kind") == "signal":
                signal_name = spec.get("signal")
                if isinstance(signal_name, str):
                    where = signal_key(workflow_id, signal_name)
                    if is_own_key(workflow_id, where):
                        await storage.delete(where)
        await storage.delete(name)
        rearmed.append(key)
    return rearmed


def _loads_or_none(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return loads(data)
    except ValueError:
        return None  # a corrupt arming is deleted all the same: it is armed anew
