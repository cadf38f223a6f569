"""Getting storage ready for a run: the manifest read and written, the records to restore.

Everything here happens under the lease and before the first step, so what
a run may reuse (the input-change policy, ``rerun_from``, records keyed by
position) is settled in one place, and the new ``run.json`` says
``running`` before any step can commit.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence

import anyio

from asyncflow._core.config import Config
from asyncflow._core.index import write_manifest
from asyncflow._core.packing import RunPack
from asyncflow._core.records import clear_for_new_run, load_records
from asyncflow._core.run_options import RunOptions
from asyncflow._core.runs import RunRecorder, invalidate
from asyncflow._core.task import Task
from asyncflow._core.waits import NotParked
from asyncflow._kernel.checkpoint import CheckpointRecord
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.errors import CheckpointMismatch, InputChangedError, SerializationError
from asyncflow._kernel.layout import manifest_key, task_prefix
from asyncflow._kernel.manifest import Manifest, fingerprint_of
from asyncflow._kernel.storage import Storage

__all__ = ["prepare_run"]

logger = logging.getLogger("asyncflow")


async def _refuse_positional(storage: Storage, previous: Manifest, tasks: Sequence[Task]) -> None:
    """Never restore a record written under a positional key into another step.

    asyncflow before name-derived keys named checkpoints ``0``, ``1``... by
    position. Such a workflow resumed under the new keys would silently run
    everything again next to stale records, or (with a hand-pinned ``key``)
    mix them up: refuse, saying how to proceed.
    """
    old = previous.tasks
    if previous.keys or not old or old != tuple(str(i) for i in range(len(old))):
        return
    if [task.key for task in tasks] == list(old):
        return  # the keys were pinned to the old positions: the records match them
    prefix = task_prefix(previous.workflow_id)
    stale = {f"{prefix}{key}.json" for key in old}
    if not [name async for name in storage.list(prefix) if name in stale]:
        return  # nothing was checkpointed under the old keys
    raise CheckpointMismatch(
        f"workflow {previous.workflow_id} was checkpointed by an earlier asyncflow with"
        f" positional keys '0'..'{len(old) - 1}'; this version keys each step by its name,"
        " so those checkpoints cannot be matched to steps safely. Either start over"
        f" (asyncflow clear {previous.workflow_id}, or start(resume=False)), or pin the"
        " old keys with task.add(..., key='0'), key='1', ... in the old order"
    )


async def prepare_run(
    config: Config,
    workflow_id: str,
    queue: list[Task],
    options: RunOptions,
    recorder: RunRecorder,
    pack: RunPack | None = None,
    parent: str | None = None,
) -> tuple[Manifest, dict[str, CheckpointRecord]]:
    """Read the manifest, apply the input-change policy, load what resume needs.

    With ``pack``, a resume restores through its snapshot (the workflow's pack
    where one listing proves it current, the records otherwise). ``parent``:
    a child flow's parent workflow id, recorded in ``run.json``.
    """
    resume, policy = options.resume, options.on_input_change
    fingerprint, mode = options.fingerprint, options.mode
    only_if_waiting = options.only_if_waiting
    storage = config.storage
    serializer = config.serializer
    where = manifest_key(workflow_id)
    # A fresh run uses nothing of the last run.json: not read (a round trip saved).
    blob = await storage.read(where) if resume or only_if_waiting else None
    previous = Manifest.decode(blob.data, where) if blob is not None else None
    if only_if_waiting and (previous is None or previous.status != "waiting"):
        raise NotParked(workflow_id, previous.status if previous else None)
    payloads = [task.initial_context.storage for task in queue]
    if fingerprint is None:
        try:
            fingerprint = fingerprint_of(payloads, serializer)
        except SerializationError:
            if resume:
                raise
            fingerprint = None
    records: dict[str, CheckpointRecord] = {}
    if resume and previous is not None:
        await _refuse_positional(storage, previous, queue)
    if resume:
        stored = previous.fingerprint if previous is not None else None
        reset = False
        if stored is not None and stored != fingerprint:
            if policy == "raise":
                raise InputChangedError(
                    f"workflow {workflow_id}: the initial contexts differ from the"
                    " checkpointed run's; pass on_input_change='reset' to start over or"
                    " 'reuse' to keep the checkpoints"
                )
            if policy == "reset":
                logger.info("%s: inputs changed; clearing checkpoints", workflow_id)
                await clear_for_new_run(storage, workflow_id)
                reset = True
            else:
                fingerprint = stored
        snapshot = None
        if not reset:
            snapshot = await pack.load() if pack is not None else None
            records = await load_records(
                storage,
                workflow_id,
                [task.key for task in queue],
                serializers={serializer.name: serializer},
                signing_key=config.signing_key,
                concurrency=config.read_concurrency,
                snapshot=snapshot,
            )
        if options.rerun_from is not None:
            await invalidate(
                storage, workflow_id, queue, options.rerun_from, mode, records, snapshot
            )
    else:
        await clear_for_new_run(storage, workflow_id)
    now = time.time()
    manifest = Manifest(
        workflow_id=workflow_id,
        status="running",
        fingerprint=fingerprint,
        mode=mode,
        tasks=tuple(task.key for task in queue),
        steps=tuple(task.name for task in queue),
        depends_on={t.key: t.depends_on for t in queue if t.depends_on},
        kinds={t.key: t.kind for t in queue if t.kind != "step"},
        over={t.key: t.over for t in queue if t.over is not None},
        keys="name",
        created_at=previous.created_at if previous is not None and resume else now,
        updated_at=now,
        run_id=recorder.run_id,
        groups=tuple(task.group_name for task in queue),
        host=recorder.host,
        pid=recorder.pid,
        started_at=recorder.started_at,
        parent=parent,
    )
    with anyio.CancelScope(shield=True):
        if storage.persistent:
            # Two independent keys side by side: one round trip of latency.
            write = functools.partial(write_manifest, storage, manifest, previous=previous)
            await run_all([write, recorder.begin])
        else:
            await write_manifest(storage, manifest, previous=previous)
            await recorder.begin()
    return manifest, records
