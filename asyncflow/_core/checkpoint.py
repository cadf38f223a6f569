"""Checkpoint records: their bytes, bulk loading and clearing.

Where records live is ``asyncflow._core.layout``'s business (its key
builders are re-exported here for existing callers). A record is one JSON
object. ``output`` is whatever the serializer made of the step's output;
``output_digest`` hashes those bytes so that a later step can tell whether
the input it was checkpointed with is the input it would get now
(``input_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from asyncflow._core.concurrency import run_all
from asyncflow._core.errors import CheckpointCorrupt, SerializationError
from asyncflow._core.layout import (
    is_own_key,
    manifest_key,
    task_prefix,
    task_storage_key,
    workflow_keys,
)
from asyncflow._core.storage import Storage
from asyncflow.serializers import JSONSerializer, Serializer, untagged

__all__ = [
    "FORMAT",
    "FORMAT_BLOB",
    "SIG_PREFIX",
    "CheckpointRecord",
    "EncodedOutput",
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
#: The format of a record whose output is offloaded to a blob (``asyncflow._core.blobs``):
#: an asyncflow that predates blobs refuses it instead of reading the reference as the output.
FORMAT_BLOB = 2
_SIG_PREFIX = b"asyncflow-hmac-sha256:"
SIG_PREFIX = _SIG_PREFIX


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
_text = json.encoder.encode_basestring_ascii


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# ``JSONEncoder.encode`` builds a C encoder per call, which cost more than the
# encoding of a small output. Without circular-reference markers the C encoder
# holds no state, so one serves every call on every thread; a cycle still ends
# in ``RecursionError``.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODER = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(None, _refuse, _text, None, ":", ",", False, False, False)
)


def dumps(value: Any) -> bytes:
    """Canonical JSON: ASCII-only so lone surrogates survive, no NaN."""
    if _C_ENCODER is None:  # pragma: no cover - interpreters without the C accelerator
        return _ENCODER.encode(value).encode()
    return "".join(_C_ENCODER(value, 0)).encode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid in a record")


# ``json.loads(..., parse_constant=...)`` builds a decoder (and its C scanner)
# per call, which cost more than parsing a record; like ``json``'s own default
# decoder, one serves every call on every thread.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_scan = vars(_DECODER)["scan_once"]  # the scanner ``decode`` calls, set per instance


def loads(data: bytes) -> Any:
    """Parse what ``dumps`` wrote; ``NaN``/``Infinity`` and too-deep nesting are ``ValueError``.

    Exactly ``json.loads(data, parse_constant=...)``, encoding detection
    included; a record starts ``{"``, which ``json`` always reads as UTF-8.
    """
    try:
        if type(data) is not bytes or not data.startswith(b'{"'):
            return json.loads(data, parse_constant=_no_constant)
        return _parse_object(data.decode("utf-8", "surrogatepass"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _parse_object(text: str) -> Any:
    """``_DECODER.decode(text)`` for text starting ``{``, scanned directly.

    ``decode`` matches whitespace around the value with two regex calls
    first; text that does not end right after the object (trailing
    whitespace, extra data, an error) goes through it for its exact result.
    """
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return _DECODER.decode(text)
    return value if end == len(text) else _DECODER.decode(text)


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
    #: ``(sha256, size)`` of the blob holding the output when it was offloaded;
    #: ``output`` is then the decoded blob once ``load_records`` has read it.
    blob: tuple[str, int] | None = None


class EncodedOutput(NamedTuple):
    """An output already encoded, so its digest and bytes are computed once.

    A named tuple rather than a frozen dataclass: one is built per step, and
    a frozen dataclass costs three times as much to build. ``blob`` is the
    SHA-256 of the blob when ``payload`` is a reference to one.
    """

    payload: bytes
    digest: str
    blob: str | None = None


def encode_output(
    serializer: Serializer, value: Any, step: str, max_bytes: int | None = None
) -> EncodedOutput:
    """Encode ``value`` strictly; a refusal names the step and the type (or the size)."""
    try:
        payload = dumps(serializer.encode(value))
    except SerializationError as exc:
        raise SerializationError(f"step {step}: {exc}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"step {step}: cannot encode output of type {type(value).__qualname__}: {exc}"
        ) from exc
    if max_bytes is not None and len(payload) > max_bytes:
        raise SerializationError(
            f"step {step}: its output is {len(payload):,} bytes encoded, over the limit of"
            f" {max_bytes:,} (Config(max_output_bytes=...)); nothing was written. Return"
            " less (e.g. a path or an object-store key to the data), or raise the limit"
        )
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
            "asyncflow": FORMAT if output.blob is None else FORMAT_BLOB,
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
    return _join((header[:-1], b',"output":', output.payload, b"}"), signing_key)


def _join(parts: tuple[bytes, ...], signing_key: bytes | None) -> bytes:
    """The (signed) record from its parts, copying the output's bytes once."""
    if signing_key is None:
        return b"".join(parts)
    mac = hmac.new(signing_key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return b"".join((_SIG_PREFIX, mac.hexdigest().encode(), b"\n", *parts))


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
        self._blob_head = self._head.replace(f":{FORMAT},", f":{FORMAT_BLOB},", 1)
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
            f"{self._head if output.blob is None else self._blob_head}"
            f'{_text(key)},"task_id":{task_id!r}{parts[0]}'
            f',"attempts":{attempts!r},"started_at":{float(started_at)!r}'
            f',"finished_at":{float(finished_at)!r},"input_digest":{digest_in}'
            f',"output_digest":{_text(output.digest)}{parts[1]}'
        )
        return _join((header.encode(), output.payload, b"}"), self._signing_key)


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
    if raw["asyncflow"] > FORMAT_BLOB:
        raise CheckpointCorrupt(
            f"{where} was written in record format {raw['asyncflow']} by a newer asyncflow;"
            f" this version reads formats up to {FORMAT_BLOB}: upgrade asyncflow",
            key=where,
        )
    fields = _plain_fields(raw)
    if fields is None:
        fields = _checked_fields(raw, where)
    if fields[0] != workflow_id or fields[1] != key:
        raise CheckpointCorrupt(
            f"{where} belongs to workflow {fields[0]!r} key {fields[1]!r},"
            f" not {workflow_id!r} key {key!r}",
            key=where,
        )
    serializer = serializers.get(fields[11])
    if serializer is None:
        raise CheckpointCorrupt(
            f"{where} was written with the {fields[11]!r} serializer, which this"
            f" flow does not use (configured: {', '.join(sorted(serializers))})",
            key=where,
        )
    payload = raw["output"]
    if raw["asyncflow"] == FORMAT_BLOB:
        from asyncflow._core.blobs import parse_ref

        ref = parse_ref(payload)
        if ref is None:
            raise CheckpointCorrupt(f"{where}: its blob reference is malformed", key=where)
        return CheckpointRecord(*fields, output=None, blob=ref)
    tail = _output_tail(body)
    if tail is None or digest(tail) != fields[9]:
        if not _reencoded_matches(payload, fields[9]):
            raise CheckpointCorrupt(f"{where}: output does not match its digest", key=where)
        tail = None
    if tail is not None and type(serializer) is JSONSerializer and untagged(tail):
        return CheckpointRecord(*fields, output=payload)
    try:
        output = serializer.decode(payload)
    except Exception as exc:
        raise CheckpointCorrupt(f"{where}: cannot decode output: {exc}", key=where) from exc
    return CheckpointRecord(*fields, output=output)


#: A record's fields in ``CheckpointRecord`` order, ``output`` excepted.
_Fields = tuple[str, str, int, str, str, int, float, float, str | None, str, str, str]


def _plain_fields(raw: dict[str, Any]) -> _Fields | None:
    """The record's fields if every one is present with its type, else ``None``.

    ``json`` builds only exact ``str``/``int``/``float`` (a ``bool`` is not an
    exact ``int``), so these exact type tests accept what ``_field`` accepts,
    at a fraction of the cost of twelve calls on every record of a resume.
    Timestamps must be floats here, as asyncflow writes them; ``None`` sends
    any other record to ``_checked_fields``, which converts whole-number
    timestamps and names the first bad field.
    """
    try:
        values = (
            raw["workflow_id"],
            raw["key"],
            raw["task_id"],
            raw["step"],
            raw["module"],
            raw["attempts"],
            raw["started_at"],
            raw["finished_at"],
            raw["input_digest"],
            raw["output_digest"],
            raw["code_hash"],
            raw["serializer"],
        )
    except KeyError:
        return None
    digest_in = values[8]
    plain = (
        type(values[0]) is str
        and type(values[1]) is str
        and type(values[2]) is int
        and type(values[3]) is str
        and type(values[4]) is str
        and type(values[5]) is int
        and type(values[6]) is float
        and type(values[7]) is float
        and (type(digest_in) is str or digest_in is None)
        and type(values[9]) is str
        and type(values[10]) is str
        and type(values[11]) is str
        and "output" in raw
    )
    return values if plain else None


def _checked_fields(raw: dict[str, Any], where: str) -> _Fields:
    """Each field checked in turn: the first missing or mistyped one is ``CheckpointCorrupt``."""
    try:
        fields: _Fields = (
            _field(raw, "workflow_id", str),
            _field(raw, "key", str),
            _field(raw, "task_id", int),
            _field(raw, "step", str),
            _field(raw, "module", str),
            _field(raw, "attempts", int),
            _timestamp(raw, "started_at"),
            _timestamp(raw, "finished_at"),
            _field(raw, "input_digest", (str, type(None))),
            _field(raw, "output_digest", str),
            _field(raw, "code_hash", str),
            _field(raw, "serializer", str),
        )
        if "output" not in raw:
            raise ValueError("field 'output' is missing")
    except ValueError as exc:
        raise CheckpointCorrupt(f"{where} is malformed: {exc}", key=where) from exc
    return fields


def _timestamp(raw: dict[str, Any], name: str) -> float:
    """A number as a float; a whole number too large for one is malformed, not ``OverflowError``."""
    try:
        return float(_field(raw, name, (int, float)))
    except OverflowError:
        raise ValueError(f"field {name!r} is too large for a float") from None


_OUTPUT_MARK = b',"output":'


def _output_tail(body: bytes) -> bytes | None:
    """The output's own bytes, when the record is laid out as asyncflow writes it.

    asyncflow writes ``"output"`` last, so the payload's bytes are the tail
    of the record: hashing them avoids re-encoding every output on resume. A
    quote inside a JSON string is escaped, so the first ``,"output":`` is the
    key itself.
    """
    mark = body.find(_OUTPUT_MARK)
    if mark < 0 or not body.endswith(b"}"):
        return None
    return body[mark + len(_OUTPUT_MARK) : -1]


def _reencoded_matches(payload: Any, expected: str) -> bool:
    """The digest check for a record laid out otherwise (hand-written): re-encode the payload."""
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


def _deps_dict(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ValueError("field 'depends_on' must map keys to lists of keys")
    return {key: _str_tuple(deps, "depends_on") for key, deps in value.items()}


def _int_dict(value: Any, name: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(type(v) is int and v >= 0 for v in value.values()):
        raise ValueError(f"field {name!r} must map strings to counts")
    return dict(value)


def _waiting_dict(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("field 'waiting' must map keys to objects")
    return dict(value)


def _optional_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"field {name!r} must be a number or null")
    return float(value)


def _optional(raw: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """An optional field: absent or null is ``None``; present, it must have its type."""
    if raw.get(name) is None:
        return None
    return _field(raw, name, kind)


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
    thread hop for many files) is asked for every wanted key in chunks, no
    listing: a missing file costs one failed open, and a directory or a FIFO
    where a record should be is refused by the read instead of being left
    out of a listing as if there were no checkpoint.
    """
    wanted = {task_storage_key(workflow_id, key): key for key in keys}
    records: dict[str, CheckpointRecord] = {}
    read_many = getattr(storage, "read_many", None)
    if read_many is not None:
        found = list(wanted)
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
        return await _resolve_blobs(storage, workflow_id, records, serializers, concurrency)
    found = [name async for name in storage.list(task_prefix(workflow_id)) if name in wanted]
    if not found:
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
    from asyncflow._core.blobs import resolve

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
    await _delete_all(storage, [n for n in names if n != manifest and not n.startswith(blobs)])
    await _delete_all(storage, [n for n in names if n.startswith(blobs)])
    if manifest in names:
        await storage.delete(manifest)
    return len(names)


async def _delete_all(storage: Storage, names: list[str]) -> None:
    if not names:
        return
    batch = getattr(storage, "delete_many", None)
    if batch is not None:
        await batch(names)
        return
    pending = iter(names)

    async def worker() -> None:
        for name in pending:
            await storage.delete(name)

    await run_all([worker] * min(16, len(names)))


@dataclass(frozen=True, slots=True)
class Manifest:
    """``run.json``: the latest run's status and the inputs' fingerprint.

    ``steps`` holds the step name of each key in ``tasks`` (same order);
    ``outcomes`` maps each key to what happened to it in the latest finished
    run (``completed``, ``skipped``, ``failed``, ``cancelled``, ``not run``)
    and ``errors`` each failed key to its last error. All three are optional
    in older manifests (decoded as empty), and ``outcomes``/``errors`` are
    empty while a run is going on.

    The flow's shape, so that tools can draw and walk it without the code
    (all optional, absent in manifests of earlier versions): ``depends_on``
    maps each key with dependencies to them, ``kinds`` each key that is not a
    plain step to ``map`` or ``flow``, ``over`` each map to the key it maps
    over, ``children`` each map that expanded to its number of children
    (keys ``{map}.0``... ``{map}.{n-1}``). ``keys`` is ``"name"`` when keys
    derive from step names (this version) and empty before.
    ``waiting`` maps each key parked at a durable wait to what it waits for
    (``WaitSpec.to_json()``: kind, wake_at, signal, deadline) and ``due_at``
    is the earliest time one becomes due by the clock (``None`` when only
    signals can wake the run); both are written only when a run parks, and
    are what a worker's scan reads (``asyncflow._core.worker``).


    Since run history: ``run_id`` names the run (its summary is
    ``runs/{run_id}.json``), ``running`` the keys in progress while it is
    live, ``interrupted`` the keys a cancelled run stopped in, ``groups`` each
    key's ``group_name`` (what ``reset --from`` walks), ``host``/``pid`` who
    runs it and ``started_at`` when this run began. All optional on decode.
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
    depends_on: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    over: dict[str, str] = field(default_factory=dict)
    children: dict[str, int] = field(default_factory=dict)
    keys: str = ""
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    due_at: float | None = None

    run_id: str | None = None
    running: tuple[str, ...] = ()
    interrupted: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    host: str | None = None
    pid: int | None = None
    started_at: float | None = None

    def encode(self) -> bytes:
        shape: dict[str, Any] = {}
        if self.keys:
            shape["keys"] = self.keys
        if self.depends_on:
            shape["depends_on"] = {key: list(deps) for key, deps in self.depends_on.items()}
        if self.kinds:
            shape["kinds"] = self.kinds
        if self.over:
            shape["over"] = self.over
        if self.children:
            shape["children"] = self.children
        extra: dict[str, Any] = {}
        if self.waiting:
            extra = {"waiting": self.waiting, "due_at": self.due_at}
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
                **shape,
                **extra,
                "run_id": self.run_id,
                "running": list(self.running),
                "interrupted": list(self.interrupted),
                "groups": list(self.groups),
                "host": self.host,
                "pid": self.pid,
                "started_at": self.started_at,
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
                depends_on=_deps_dict(raw.get("depends_on", {})),
                kinds=_str_dict(raw.get("kinds", {}), "kinds"),
                over=_str_dict(raw.get("over", {}), "over"),
                children=_int_dict(raw.get("children", {}), "children"),
                keys=_field(raw, "keys", str) if "keys" in raw else "",
                waiting=_waiting_dict(raw.get("waiting", {})),
                due_at=_optional_float(raw.get("due_at"), "due_at"),
                run_id=_optional(raw, "run_id", str),
                running=_str_tuple(raw.get("running", []), "running"),
                interrupted=_str_tuple(raw.get("interrupted", []), "interrupted"),
                groups=_str_tuple(raw.get("groups", []), "groups"),
                host=_optional(raw, "host", str),
                pid=_optional(raw, "pid", int),
                started_at=_optional(raw, "started_at", (int, float)),
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
