"""Checkpoint records: their layout in storage, their bytes, and bulk loading.

Layout, identical on every backend::

    {workflow_id}/run.json            run manifest
    {workflow_id}/lease.json          the live runner's lease
    {workflow_id}/tasks/{key}.json    one record per completed task

A record is one JSON object. ``output`` is whatever the serializer made of
the step's output; ``output_digest`` hashes those bytes so that a later step
can tell whether the input it was checkpointed with is the input it would
get now (``input_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from asyncflow._core.concurrency import run_all
from asyncflow._core.errors import CheckpointCorrupt, SerializationError
from asyncflow._core.storage import Storage
from asyncflow.serializers import Serializer

__all__ = [
    "FORMAT",
    "CheckpointRecord",
    "Manifest",
    "RecordEncoder",
    "clear_workflow",
    "decode_record",
    "encode_record",
    "load_records",
    "manifest_key",
    "task_prefix",
    "task_storage_key",
]

FORMAT = 1
_SIG_PREFIX = b"asyncflow-hmac-sha256:"


def task_prefix(workflow_id: str) -> str:
    return f"{workflow_id}/tasks/"


def task_storage_key(workflow_id: str, key: str) -> str:
    return f"{workflow_id}/tasks/{key}.json"


def manifest_key(workflow_id: str) -> str:
    return f"{workflow_id}/run.json"


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
_text = json.encoder.encode_basestring_ascii


def dumps(value: Any) -> bytes:
    """Canonical JSON: ASCII-only so lone surrogates survive, no NaN.

    One shared encoder: ``json.dumps`` with options builds a new one per call,
    which was a visible part of every checkpoint's cost.
    """
    return _ENCODER.encode(value).encode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid in a record")


def loads(data: bytes) -> Any:
    """Parse what ``dumps`` wrote; ``NaN``/``Infinity`` and too-deep nesting are ``ValueError``."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """What a checkpoint says about one completed task."""

    workflow_id: str
    key: str
    task_id: int
    step: str
    module: str
    attempts: int
    started_at: float
    finished_at: float
    input_digest: str | None
    output_digest: str
    code_hash: str
    serializer: str
    output: Any


@dataclass(frozen=True, slots=True)
class EncodedOutput:
    """An output already encoded, so its digest and bytes are computed once."""

    payload: bytes
    digest: str


def encode_output(serializer: Serializer, value: Any, step: str) -> EncodedOutput:
    """Encode ``value`` strictly; a refusal names the step and the type."""
    try:
        payload = dumps(serializer.encode(value))
    except SerializationError as exc:
        raise SerializationError(f"step {step}: {exc}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"step {step}: cannot encode output of type {type(value).__qualname__}: {exc}"
        ) from exc
    return EncodedOutput(payload, digest(payload))


def encode_record(
    *,
    workflow_id: str,
    key: str,
    task_id: int,
    step: str,
    module: str,
    attempts: int,
    started_at: float,
    finished_at: float,
    input_digest: str | None,
    code_hash: str,
    serializer: str,
    output: EncodedOutput,
    signing_key: bytes | None = None,
) -> bytes:
    header = dumps(
        {
            "asyncflow": FORMAT,
            "workflow_id": workflow_id,
            "key": key,
            "task_id": task_id,
            "step": step,
            "module": module,
            "status": "completed",
            "attempts": attempts,
            "started_at": started_at,
            "finished_at": finished_at,
            "input_digest": input_digest,
            "output_digest": output.digest,
            "code_hash": code_hash,
            "serializer": serializer,
        }
    )
    body = header[:-1] + b',"output":' + output.payload + b"}"
    return sign(body, signing_key)


class RecordEncoder:
    """``encode_record`` for one workflow, byte for byte, at a fraction of the cost.

    Every step of a run writes a record whose header differs from the last one
    only in a few numbers and digests; JSON-encoding the whole header dict per
    step was the largest single cost of an in-memory step. Here the parts that
    depend only on the step (name, module, code hash) are encoded once per
    distinct step and the rest is formatted directly: ints and finite floats
    as ``json`` writes them (``int.__repr__``, ``float.__repr__``), strings
    through the same C escaper ``json`` uses.
    """

    def __init__(self, workflow_id: str, serializer: str, signing_key: bytes | None) -> None:
        self._head = f'{{"asyncflow":{FORMAT},"workflow_id":{_text(workflow_id)},"key":'
        self._serializer = _text(serializer)
        self._signing_key = signing_key
        self._steps: dict[tuple[str, str, str], tuple[str, str]] = {}

    def encode(
        self,
        *,
        key: str,
        task_id: int,
        step: str,
        module: str,
        attempts: int,
        started_at: float,
        finished_at: float,
        input_digest: str | None,
        code_hash: str,
        output: EncodedOutput,
    ) -> bytes:
        parts = self._steps.get((step, module, code_hash))
        if parts is None:
            parts = (
                f',"step":{_text(step)},"module":{_text(module)},"status":"completed"',
                f',"code_hash":{_text(code_hash)},"serializer":{self._serializer},"output":',
            )
            self._steps[(step, module, code_hash)] = parts
        if type(task_id) is not int or type(attempts) is not int:
            raise TypeError("task_id and attempts must be int")
        if not (math.isfinite(started_at) and math.isfinite(finished_at)):
            raise ValueError("timestamps must be finite")
        digest_in = "null" if input_digest is None else _text(input_digest)
        header = (
            f'{self._head}{_text(key)},"task_id":{task_id!r}{parts[0]}'
            f',"attempts":{attempts!r},"started_at":{float(started_at)!r}'
            f',"finished_at":{float(finished_at)!r},"input_digest":{digest_in}'
            f',"output_digest":{_text(output.digest)}{parts[1]}'
        )
        return sign(header.encode() + output.payload + b"}", self._signing_key)


def sign(body: bytes, signing_key: bytes | None) -> bytes:
    """Prefix a signature line when a key is configured; the body stays readable JSON."""
    if signing_key is None:
        return body
    mac = hmac.new(signing_key, body, hashlib.sha256).hexdigest().encode()
    return _SIG_PREFIX + mac + b"\n" + body


def verify(data: bytes, signing_key: bytes | None, where: str) -> bytes:
    if not data.startswith(_SIG_PREFIX):
        if signing_key is not None:
            raise CheckpointCorrupt(f"{where} is not signed but a signing_key is set", key=where)
        return data
    if signing_key is None:
        raise CheckpointCorrupt(f"{where} is signed; configure Config(signing_key=...)", key=where)
    line, _, body = data.partition(b"\n")
    expected = hmac.new(signing_key, body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(line[len(_SIG_PREFIX) :], expected):
        raise CheckpointCorrupt(f"{where} has a bad signature: it was altered", key=where)
    return body


def decode_record(
    data: bytes,
    *,
    where: str,
    workflow_id: str,
    key: str,
    serializers: dict[str, Serializer],
    signing_key: bytes | None = None,
) -> CheckpointRecord:
    """Parse and check a record; anything wrong is ``CheckpointCorrupt`` naming ``where``."""
    body = verify(data, signing_key, where)
    try:
        raw = loads(body)
    except ValueError as exc:
        raise CheckpointCorrupt(f"{where} is not valid JSON: {exc}", key=where) from exc
    if not isinstance(raw, dict) or type(raw.get("asyncflow")) is not int or raw["asyncflow"] < 1:
        raise CheckpointCorrupt(f"{where} is not an asyncflow checkpoint record", key=where)
    if raw["asyncflow"] > FORMAT:
        raise CheckpointCorrupt(
            f"{where} was written in record format {raw['asyncflow']} by a newer asyncflow;"
            f" this version reads format {FORMAT}: upgrade asyncflow",
            key=where,
        )
    try:
        fields: dict[str, Any] = {
            "workflow_id": _field(raw, "workflow_id", str),
            "key": _field(raw, "key", str),
            "task_id": _field(raw, "task_id", int),
            "step": _field(raw, "step", str),
            "module": _field(raw, "module", str),
            "attempts": _field(raw, "attempts", int),
            "started_at": float(_field(raw, "started_at", (int, float))),
            "finished_at": float(_field(raw, "finished_at", (int, float))),
            "input_digest": _field(raw, "input_digest", (str, type(None))),
            "output_digest": _field(raw, "output_digest", str),
            "code_hash": _field(raw, "code_hash", str),
            "serializer": _field(raw, "serializer", str),
        }
        if "output" not in raw:
            raise ValueError("field 'output' is missing")
    except ValueError as exc:
        raise CheckpointCorrupt(f"{where} is malformed: {exc}", key=where) from exc
    if fields["workflow_id"] != workflow_id or fields["key"] != key:
        raise CheckpointCorrupt(
            f"{where} belongs to workflow {fields['workflow_id']!r} key {fields['key']!r},"
            f" not {workflow_id!r} key {key!r}",
            key=where,
        )
    serializer = serializers.get(fields["serializer"])
    if serializer is None:
        raise CheckpointCorrupt(
            f"{where} was written with the {fields['serializer']!r} serializer, which this"
            f" flow does not use (configured: {', '.join(sorted(serializers))})",
            key=where,
        )
    payload = raw["output"]
    if not _output_matches(body, payload, fields["output_digest"]):
        raise CheckpointCorrupt(f"{where}: output does not match its digest", key=where)
    try:
        output = serializer.decode(payload)
    except Exception as exc:
        raise CheckpointCorrupt(f"{where}: cannot decode output: {exc}", key=where) from exc
    return CheckpointRecord(**fields, output=output)


_OUTPUT_MARK = b',"output":'


def _output_matches(body: bytes, payload: Any, expected: str) -> bool:
    """Check the output digest, from the record's own bytes when possible.

    asyncflow writes ``"output"`` last, so the payload's bytes are the tail
    of the record: hashing them avoids re-encoding every output on resume. A
    quote inside a JSON string is escaped, so the first ``,"output":`` is the
    key itself. A record laid out otherwise (hand-written) falls back to
    re-encoding the decoded payload.
    """
    mark = body.find(_OUTPUT_MARK)
    tail = body[mark + len(_OUTPUT_MARK) : -1] if mark >= 0 and body.endswith(b"}") else None
    if tail is not None and digest(tail) == expected:
        return True
    try:
        return digest(dumps(payload)) == expected
    except ValueError:
        return False


def _str_tuple(values: list[Any], name: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(type(v) is str for v in values):
        raise ValueError(f"field {name!r} must be a list of strings")
    return tuple(values)


def _str_dict(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(type(v) is str for v in value.values()):
        raise ValueError(f"field {name!r} must map strings to strings")
    return dict(value)


def _field(raw: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = raw.get(name)
    if name not in raw or not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"field {name!r} is missing or has the wrong type")
    return value


_READ_MANY_CHUNK = 512


async def load_records(
    storage: Storage,
    workflow_id: str,
    keys: Iterable[str],
    *,
    serializers: dict[str, Serializer],
    signing_key: bytes | None = None,
    concurrency: int = 32,
) -> dict[str, CheckpointRecord]:
    """All records of ``keys`` that exist: one listing, then bounded concurrent reads.

    A storage with an optional ``read_many(keys)`` (``StorageFile``: one
    thread hop for many files) is read in chunks through it instead.
    """
    wanted = {task_storage_key(workflow_id, key): key for key in keys}
    found = [name async for name in storage.list(task_prefix(workflow_id)) if name in wanted]
    records: dict[str, CheckpointRecord] = {}
    if not found:
        return records
    read_many = getattr(storage, "read_many", None)
    if read_many is not None:
        for start in range(0, len(found), _READ_MANY_CHUNK):
            chunk = found[start : start + _READ_MANY_CHUNK]
            for where, blob in zip(chunk, await read_many(chunk), strict=True):
                if blob is not None:
                    key = wanted[where]
                    records[key] = decode_record(
                        blob.data,
                        where=where,
                        workflow_id=workflow_id,
                        key=key,
                        serializers=serializers,
                        signing_key=signing_key,
                    )
        return records
    pending = iter(found)

    async def worker() -> None:
        for where in pending:
            blob = await storage.read(where)
            if blob is None:
                continue
            key = wanted[where]
            records[key] = decode_record(
                blob.data,
                where=where,
                workflow_id=workflow_id,
                key=key,
                serializers=serializers,
                signing_key=signing_key,
            )

    await run_all([worker] * max(1, min(concurrency, len(found))))
    return records


async def clear_workflow(storage: Storage, workflow_id: str, *, tasks_only: bool = False) -> int:
    """Delete a workflow's records (the lease is never touched); returns how many."""
    prefix = task_prefix(workflow_id) if tasks_only else f"{workflow_id}/"
    lease = f"{workflow_id}/lease.json"
    names = [name async for name in storage.list(prefix) if name != lease]
    batch = getattr(storage, "delete_many", None)
    if batch is not None:
        await batch(names)
    else:
        pending = iter(names)

        async def worker() -> None:
            for name in pending:
                await storage.delete(name)

        await run_all([worker] * min(16, len(names)))
    return len(names)


@dataclass(frozen=True, slots=True)
class Manifest:
    """``run.json``: the latest run's status and the inputs' fingerprint.

    ``steps`` holds the step name of each key in ``tasks`` (same order);
    ``outcomes`` maps each key to what happened to it in the latest finished
    run (``completed``, ``skipped``, ``failed``, ``cancelled``, ``not run``)
    and ``errors`` each failed key to its last error. All three are optional
    in older manifests (decoded as empty), and ``outcomes``/``errors`` are
    empty while a run is going on.
    """

    workflow_id: str
    status: str
    fingerprint: str | None
    mode: str
    tasks: tuple[str, ...]
    created_at: float
    updated_at: float
    steps: tuple[str, ...] = ()
    outcomes: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return dumps(
            {
                "asyncflow": FORMAT,
                "workflow_id": self.workflow_id,
                "status": self.status,
                "fingerprint": self.fingerprint,
                "mode": self.mode,
                "tasks": list(self.tasks),
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                "steps": list(self.steps),
                "outcomes": self.outcomes,
                "errors": self.errors,
            }
        )

    @classmethod
    def decode(cls, data: bytes, where: str) -> Manifest:
        try:
            raw = loads(data)
            if not isinstance(raw, dict) or type(raw.get("asyncflow")) is not int:
                raise ValueError("not an asyncflow run manifest")
            if raw["asyncflow"] > FORMAT:
                raise ValueError(f"format {raw['asyncflow']} is newer than {FORMAT}: upgrade")
            return cls(
                workflow_id=_field(raw, "workflow_id", str),
                status=_field(raw, "status", str),
                fingerprint=_field(raw, "fingerprint", (str, type(None))),
                mode=_field(raw, "mode", str),
                tasks=_str_tuple(_field(raw, "tasks", list), "tasks"),
                created_at=float(_field(raw, "created_at", (int, float))),
                updated_at=float(_field(raw, "updated_at", (int, float))),
                steps=_str_tuple(raw.get("steps", []), "steps"),
                outcomes=_str_dict(raw.get("outcomes", {}), "outcomes"),
                errors=_str_dict(raw.get("errors", {}), "errors"),
            )
        except ValueError as exc:
            raise CheckpointCorrupt(f"{where} is malformed: {exc}", key=where) from exc

    def replace(self, **changes: Any) -> Manifest:
        values = {name: getattr(self, name) for name in Manifest.__slots__}
        values.update(changes)
        values["updated_at"] = time.time()
        return Manifest(**values)


def fingerprint_of(values: Iterator[Any] | list[Any], serializer: Serializer) -> str:
    """A stable hash of the initial contexts, via the same strict encoding as outputs."""
    try:
        payload = dumps(serializer.encode(list(values)))
    except (SerializationError, TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"cannot fingerprint the initial contexts ({exc}); pass start(fingerprint=...)"
        ) from exc
    return hashlib.sha256(payload).hexdigest()
