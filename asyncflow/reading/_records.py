"""Task records read for what a reader shows, never for their output.

Readers that only look (``asyncflow status``, the run viewer, your own
dashboard) need no serializer and no signing key: a record's output is
never decoded, so a pickled output is never unpickled, and a signature is
reported, not verified. A record is read only when ``run.json`` cannot tell
(a run written before the progress index, a crashed run, tasks beyond the
index's cap): one listing of ``tasks/``, then each record not known yet.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Container
from typing import Any, NamedTuple

from asyncflow._kernel.capabilities import read_many
from asyncflow._kernel.checkpoint import FORMAT, SIG_PREFIX, CheckpointRecord
from asyncflow._kernel.codec import loads
from asyncflow._kernel.decoding import decode_record
from asyncflow._kernel.errors import CheckpointCorrupt
from asyncflow._kernel.layout import task_prefix
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.snapshot import add_pack, read_tasks, take_snapshot
from asyncflow._kernel.storage import Storage
from asyncflow.reading._keys import record_keys
from asyncflow.reading._progress import Finished

__all__ = [
    "RecordCache",
    "RecordTimes",
    "ended_from_record",
    "read_ended",
    "record_meta",
    "record_times",
    "run_identity",
]

#: Records read at once.
CONCURRENCY = 32
#: Up to this many records to read, they are read from their keys, not the pack.
_FEW = 8


class _Opaque:
    """A serializer that keeps the stored payload as is: metadata only, never unpickled."""

    def __init__(self, name: str) -> None:
        self.name = name

    def encode(self, value: Any) -> Any:  # pragma: no cover - never used to write
        raise NotImplementedError

    def decode(self, payload: Any) -> Any:
        return None


def record_meta(
    data: bytes, where: str, workflow_id: str, key: str
) -> tuple[CheckpointRecord, bool]:
    """The record (its output left undecoded) and whether it is signed.

    ``CheckpointCorrupt`` names ``where`` when the record is malformed or its
    output does not match its digest.
    """
    signed = data.startswith(SIG_PREFIX)
    if signed:
        data = data.partition(b"\n")[2]
    try:
        name = json.loads(data).get("serializer")
    except (ValueError, AttributeError):
        name = None
    serializer = _Opaque(name if isinstance(name, str) else "json")
    record = decode_record(
        data,
        where=where,
        workflow_id=workflow_id,
        key=key,
        serializers={serializer.name: serializer},
    )
    return record, signed


class RecordTimes(NamedTuple):
    """What a run's timeline needs of a task record."""

    step: str
    attempts: int
    started_at: float
    finished_at: float


def record_times(data: bytes, where: str, workflow_id: str, key: str) -> RecordTimes:
    """A record's step, attempts and times, parsed once; anything irregular gets the full check.

    The full check (``record_meta``) also verifies the output's digest; a
    run page reads a thousand records, a task page one, so only the task
    page pays for that, and here an irregular record goes through it for
    its exact error (``CheckpointCorrupt``).
    """
    body = data.partition(b"\n")[2] if data.startswith(SIG_PREFIX) else data
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
        return RecordTimes(step, attempts, started, finished)
    record, _ = record_meta(data, where, workflow_id, key)
    return RecordTimes(record.step, record.attempts, record.started_at, record.finished_at)


def ended_from_record(key: str, meta: RecordTimes) -> Finished:
    """A task with a record: it completed (or was restored) with these times."""
    return Finished(
        key, "completed", meta.attempts, meta.started_at, meta.finished_at, None, meta.step
    )


class RecordCache:
    """Task records already read, per workflow and run, for the next read of the same run.

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
        self._runs: OrderedDict[str, tuple[object, dict[str, Finished]]] = OrderedDict()

    def known(self, workflow_id: str, run: object) -> dict[str, Finished]:
        found = self._runs.get(workflow_id)
        if found is None or found[0] != run:
            found = (run, {})
        self._runs[workflow_id] = found
        self._runs.move_to_end(workflow_id)
        while len(self._runs) > self.workflows:
            self._runs.popitem(last=False)
        return found[1]


def run_identity(manifest: Manifest | None) -> object:
    """What tells one run from the next in ``run.json``: its run id (else its times)."""
    if manifest is None:
        return None
    return manifest.run_id or (manifest.created_at, manifest.updated_at)


async def read_ended(
    storage: Storage,
    workflow_id: str,
    known: dict[str, Finished] | None = None,
    skip: Container[str] = (),
) -> tuple[dict[str, Finished], dict[str, str], dict[str, bool]]:
    """Every task record as a ``completed`` entry: one listing, then the records not
    ``known`` yet and not in ``skip`` (the keys the progress index already tells),
    from the workflow's pack where the listing proves its copy current
    (``asyncflow._kernel.snapshot``; a torn or altered pack is
    ``CheckpointCorrupt`` naming it), from their own keys otherwise.

    ``known`` is updated in place: records gone from the listing leave it.
    Also returns each record that could not be parsed (key: why) and, for
    each record read now, whether it is signed.
    """
    snapshot = await take_snapshot(storage, workflow_id, signing_key=None, with_pack=False)
    listed = snapshot.tokens
    if listed is None:
        listed = {name: "" async for name in storage.list(task_prefix(workflow_id))}
    found = record_keys(workflow_id, listed)
    records = {} if known is None else known
    for gone in [key for key in records if key not in found]:
        del records[gone]
    problems: dict[str, str] = {}
    signed: dict[str, bool] = {}
    wanted = [(key, name) for key, name in found.items() if key not in records and key not in skip]
    names = [name for _, name in wanted]
    if snapshot.tokens is not None:
        if len(names) > _FEW:  # a few records cost less than the pack
            await add_pack(storage, snapshot, signing_key=None, check_signature=False)
        datas = await read_tasks(storage, snapshot, names, concurrency=CONCURRENCY)
    else:
        blobs = await read_many(storage, names, concurrency=CONCURRENCY)
        datas = [None if blob is None else blob.data for blob in blobs]
    for (key, name), data in zip(wanted, datas, strict=True):
        if data is None:
            continue
        try:
            times = record_times(data, name, workflow_id, key)
        except CheckpointCorrupt as exc:
            problems[key] = str(exc)
            continue
        records[key] = ended_from_record(key, times)
        signed[key] = data.startswith(SIG_PREFIX)
    return records, problems, signed
