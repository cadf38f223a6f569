"""Checkpoint records: their bytes and their signature.

Where records live is ``asyncflow._kernel.layout``'s business; reading one
back strictly is ``asyncflow._kernel.decoding``'s; loading and clearing them
in bulk is ``asyncflow._core.records``'s. A record is one JSON
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
from dataclasses import dataclass
from typing import Any, NamedTuple

from asyncflow._kernel.codec import digest, dumps
from asyncflow._kernel.errors import CheckpointCorrupt, SerializationError
from asyncflow._kernel.serializers import _MAX_PLAIN_INT_BITS, JSONSerializer, Serializer

__all__ = [
    "FORMAT",
    "FORMAT_BLOB",
    "SIG_PREFIX",
    "CheckpointRecord",
    "EncodedOutput",
    "Fields",
    "RecordEncoder",
    "encode_output",
    "encode_record",
    "make_record",
    "sign",
    "verify",
]

_text = json.encoder.encode_basestring_ascii
_isfinite = math.isfinite
#: Bytes ``_text`` escapes in an ASCII string: controls, DEL, quote, backslash.
_ESCAPED = bytes([*range(0x20), 0x7F, 0x22, 0x5C])
#: Below this many characters ``_text`` is the faster of the two.
_LONG_TEXT = 4096

FORMAT = 1
#: The format of a record whose output is offloaded to a blob (``asyncflow._kernel.blobs``):
#: an asyncflow that predates blobs refuses it instead of reading the reference as the output.
FORMAT_BLOB = 2
_SIG_PREFIX = b"asyncflow-hmac-sha256:"
SIG_PREFIX = _SIG_PREFIX


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


#: A record's fields in ``CheckpointRecord`` order, ``output`` excepted.
Fields = tuple[str, str, int, str, str, int, float, float, str | None, str, str, str]

_new = object.__new__
(
    _set_workflow_id,
    _set_key,
    _set_task_id,
    _set_step,
    _set_module,
    _set_attempts,
    _set_started_at,
    _set_finished_at,
    _set_input_digest,
    _set_output_digest,
    _set_code_hash,
    _set_serializer,
    _set_output,
    _set_blob,
) = (vars(CheckpointRecord)[name].__set__ for name in CheckpointRecord.__slots__)


def make_record(
    fields: Fields, output: Any, blob: tuple[str, int] | None = None
) -> CheckpointRecord:
    """``CheckpointRecord(*fields, output=output, blob=blob)``, the slots set directly.

    One per record of a resume: the frozen dataclass's ``__init__`` (an
    ``object.__setattr__`` per field, fourteen of them) was a fifth of the
    cost of decoding a small record.
    """
    record = _new(CheckpointRecord)
    _set_workflow_id(record, fields[0])
    _set_key(record, fields[1])
    _set_task_id(record, fields[2])
    _set_step(record, fields[3])
    _set_module(record, fields[4])
    _set_attempts(record, fields[5])
    _set_started_at(record, fields[6])
    _set_finished_at(record, fields[7])
    _set_input_digest(record, fields[8])
    _set_output_digest(record, fields[9])
    _set_code_hash(record, fields[10])
    _set_serializer(record, fields[11])
    _set_output(record, output)
    _set_blob(record, blob)
    return record


class EncodedOutput(NamedTuple):
    """An output already encoded, so its digest and bytes are computed once.

    A named tuple rather than a frozen dataclass: one is built per step, and
    a frozen dataclass costs three times as much to build. ``blob`` is the
    SHA-256 of the blob when ``payload`` is a reference to one.
    """

    payload: bytes
    digest: str
    blob: str | None = None


def _scalar_json(value: Any) -> bytes | None:
    """``dumps(JSONSerializer().encode(value))`` for a plain JSON scalar, else ``None``.

    The common output of a small step is one int or str: formatted here as
    ``json`` formats it (``int.__repr__``, ``float.__repr__``, the same C
    escaper), without walking it and without the encoder's chunk list.
    Exact types only: a subclass, a long int or a non-finite float is left
    to the strict walk, which tags or refuses it.
    """
    kind = type(value)
    if kind is str:
        return _long_text(value) if len(value) > _LONG_TEXT else _text(value).encode()
    if kind is int:
        return int.__repr__(value).encode() if value.bit_length() <= _MAX_PLAIN_INT_BITS else None
    if kind is float:
        return float.__repr__(value).encode() if math.isfinite(value) else None
    if kind is bool:
        return b"true" if value else b"false"
    return b"null" if value is None else None


def _long_text(value: str) -> bytes:
    """``_text(value).encode()`` for long text, in half the time when nothing needs escaping.

    The C escaper walks a megabyte of text in about 1.5 ms; most long outputs
    (documents, model replies, CSV) are printable ASCII with nothing to
    escape, which one C ``translate`` proves, and the bytes are then the text
    itself between quotes.
    """
    if value.isascii():
        raw = value.encode()
        if len(raw.translate(None, _ESCAPED)) == len(raw):
            return b"".join((b'"', raw, b'"'))
    return _text(value).encode()


def encode_output(
    serializer: Serializer, value: Any, step: str, max_bytes: int | None = None
) -> EncodedOutput:
    """Encode ``value`` strictly; a refusal names the step and the type (or the size)."""
    if type(serializer) is JSONSerializer:
        payload = _scalar_json(value)
        if payload is not None and (max_bytes is None or len(payload) <= max_bytes):
            return EncodedOutput(payload, digest(payload))
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
        if type(started_at) is not float or type(finished_at) is not float:
            started_at, finished_at = float(started_at), float(finished_at)
        if not (_isfinite(started_at) and _isfinite(finished_at)):
            raise ValueError("timestamps must be finite")
        header = (
            f"{self._head if output.blob is None else self._blob_head}"
            f'{_text(key)},"task_id":{task_id!r}{parts[0]}'
            f',"attempts":{attempts!r},"started_at":{started_at!r}'
            f',"finished_at":{finished_at!r},"input_digest":'
            f"{'null' if input_digest is None else _text(input_digest)}"
            f',"output_digest":{_text(output.digest)}{parts[1]}'
        ).encode()
        if self._signing_key is None:
            return b"".join((header, output.payload, b"}"))
        return _join((header, output.payload, b"}"), self._signing_key)


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
