"""Large outputs stored once per workflow, content-addressed: ``{wf}/blobs/{sha256}``.

With ``Config(offload_over=N)`` an output whose encoded JSON is longer than
``N`` bytes is written to its blob (a conditional create, so equal outputs
share one blob) *before* the record that refers to it; the record then holds
``{"sha256": ..., "size": ...}`` in place of the output and says record
format 2, which an older asyncflow refuses rather than misreads. On read the
blob's size and SHA-256 are checked against the record (which a
``signing_key`` covers), so a changed or missing blob is ``CheckpointCorrupt``
naming it.

A blob is garbage once no record of its workflow refers to it:
``clear_workflow`` deletes every blob with the records, and
``collect_garbage`` deletes the ones no remaining record uses (run by a run
that replaced offloaded records). Blobs are only ever deleted after the
records that used them, so a crash in between leaves an orphan blob (found by
the next collection), never a record pointing at nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Collection
from typing import Any

from asyncflow._kernel.checkpoint import SIG_PREFIX, CheckpointRecord, EncodedOutput
from asyncflow._kernel.codec import dumps, loads
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.errors import CheckpointCorrupt, PreconditionFailed
from asyncflow._kernel.layout import blob_key, is_own_key, task_prefix
from asyncflow._kernel.serializers import JSONSerializer, Serializer, untagged
from asyncflow._kernel.storage import Storage

__all__ = [
    "blob_key",
    "blob_prefix",
    "collect_garbage",
    "offload",
    "parse_ref",
    "resolve",
]

logger = logging.getLogger("asyncflow")

_HEX = frozenset("0123456789abcdef")


def blob_prefix(workflow_id: str) -> str:
    return f"{workflow_id}/blobs/"


def _is_sha256(text: Any) -> bool:
    return type(text) is str and len(text) == 64 and _HEX.issuperset(text)


def parse_ref(output: Any) -> tuple[str, int] | None:
    """``(sha256, size)`` from a format-2 record's ``output``, or ``None`` if malformed."""
    if type(output) is not dict or set(output) != {"sha256", "size"}:
        return None
    sha, size = output["sha256"], output["size"]
    if not _is_sha256(sha) or type(size) is not int or size < 0:
        return None
    return sha, size


async def offload(storage: Storage, workflow_id: str, encoded: EncodedOutput) -> EncodedOutput:
    """Store ``encoded.payload`` as a blob; the result is the reference to put in the record.

    The payload is hashed and handed to the backend as it is: no copy. A
    blob already there (an equal output) is kept if it verifies, else it is
    written again, which repairs every record that shares it.
    """
    payload = encoded.payload
    sha = hashlib.sha256(payload).hexdigest()
    key = blob_key(workflow_id, sha)
    try:
        await storage.write(key, payload, if_absent=True)
    except PreconditionFailed:
        existing = await storage.read(key)
        if existing is None or hashlib.sha256(existing.data).hexdigest() != sha:
            logger.warning("%s: blob %s was missing or altered; writing it again", workflow_id, key)
            await storage.write(key, payload)
    ref = dumps({"sha256": sha, "size": len(payload)})
    return EncodedOutput(ref, encoded.digest, sha)


async def resolve(
    storage: Storage,
    record: CheckpointRecord,
    where: str,
    serializers: dict[str, Serializer],
) -> CheckpointRecord:
    """``record`` with its offloaded output read, verified and decoded."""
    assert record.blob is not None
    sha, size = record.blob
    key = blob_key(record.workflow_id, sha)
    found = await storage.read(key)
    if found is None:
        raise CheckpointCorrupt(f"{where} refers to blob {key}, which is missing", key=key)
    data = found.data
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
        raise CheckpointCorrupt(
            f"blob {key} (used by {where}) does not match its SHA-256: it was altered", key=key
        )
    try:
        payload = loads(data)
    except ValueError as exc:
        raise CheckpointCorrupt(f"blob {key} is not valid JSON: {exc}", key=key) from exc
    serializer = serializers[record.serializer]
    if type(serializer) is JSONSerializer and untagged(data):
        output = payload
    else:
        try:
            output = serializer.decode(payload)
        except Exception as exc:
            raise CheckpointCorrupt(f"{where}: cannot decode output: {exc}", key=where) from exc
    return dataclasses.replace(record, output=output)


def _referenced(data: bytes) -> str | bool | None:
    """The blob a stored record refers to, ``None`` if none, ``False`` if it cannot tell."""
    if data.startswith(SIG_PREFIX):
        data = data.partition(b"\n")[2]
    if data.startswith(b'{"asyncflow":1,'):
        return None  # format 1 records never refer to a blob
    try:
        raw = json.loads(data)
    except ValueError:
        return False
    if type(raw) is not dict or raw.get("asyncflow") == 1:
        return None if type(raw) is dict else False
    ref = parse_ref(raw.get("output"))
    return False if ref is None else ref[0]


async def collect_garbage(
    storage: Storage, workflow_id: str, *, candidates: Collection[str] | None = None
) -> int:
    """Delete the blobs of ``workflow_id`` that no record of it refers to; returns how many.

    Only ``candidates`` (SHA-256 digests) are considered when given. Reads
    every record of the workflow when there is a blob to consider; a record
    that cannot be read keeps every blob (logged), since it might use any.
    Run it while holding the workflow's lease (or with no runner), so that
    no record is being written meanwhile.
    """
    blobs = [
        key async for key in storage.list(blob_prefix(workflow_id)) if is_own_key(workflow_id, key)
    ]
    if candidates is not None:
        wanted = set(candidates)
        blobs = [key for key in blobs if key.rpartition("/")[2] in wanted]
    if not blobs:
        return 0
    records = [
        key async for key in storage.list(task_prefix(workflow_id)) if is_own_key(workflow_id, key)
    ]
    used: set[str] = set()
    unreadable: list[str] = []
    pending = iter(records)

    async def scan() -> None:
        for where in pending:
            found = await storage.read(where)
            if found is None:
                continue
            ref = _referenced(found.data)
            if ref is False:
                unreadable.append(where)
            elif ref is not None:
                assert isinstance(ref, str)
                used.add(ref)

    if records:
        await run_all([scan] * min(16, len(records)))
    if unreadable:
        logger.warning(
            "%s: kept every blob: %d record(s) cannot be read (%s)",
            workflow_id,
            len(unreadable),
            ", ".join(sorted(unreadable)[:3]),
        )
        return 0
    stale = [key for key in blobs if key.rpartition("/")[2] not in used]
    for key in stale:
        await storage.delete(key)
    if stale:
        logger.info("%s: deleted %d unused blob(s)", workflow_id, len(stale))
    return len(stale)
