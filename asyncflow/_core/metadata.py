"""A task record's metadata, read without decoding its output or checking its signature.

Readers that only look (``asyncflow status``, the run viewer) need no
serializer and no signing key: the output is never decoded, so a pickled
output is never unpickled, and a signature is reported, not verified.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from asyncflow._core.checkpoint import FORMAT, SIG_PREFIX, CheckpointRecord
from asyncflow._core.codec import loads
from asyncflow._core.decoding import decode_record

__all__ = ["RecordTimes", "record_meta", "record_times"]


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
