"""Reading a checkpoint record back: strict, and fast for the records asyncflow wrote.

Apart from ``asyncflow._kernel.checkpoint`` (the record's bytes) because a
resume decodes thousands of records: the fast path here trusts nothing it
has not type-checked, and anything else goes through the slow path, which
names the first bad field.
"""

from __future__ import annotations

from typing import Any

from asyncflow._kernel.checkpoint import FORMAT_BLOB, CheckpointRecord, Fields, make_record, verify
from asyncflow._kernel.codec import digest, dumps, loads, required_field
from asyncflow._kernel.errors import CheckpointCorrupt
from asyncflow._kernel.serializers import JSONSerializer, Serializer, untagged

__all__ = ["decode_record", "output_tail"]


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
        from asyncflow._kernel.blobs import parse_ref

        ref = parse_ref(payload)
        if ref is None:
            raise CheckpointCorrupt(f"{where}: its blob reference is malformed", key=where)
        return make_record(fields, None, ref)
    tail = output_tail(body)
    if tail is None or digest(tail) != fields[9]:
        if not _reencoded_matches(payload, fields[9]):
            raise CheckpointCorrupt(f"{where}: output does not match its digest", key=where)
        tail = None
    if tail is not None and type(serializer) is JSONSerializer and untagged(tail):
        return make_record(fields, payload)
    try:
        output = serializer.decode(payload)
    except Exception as exc:
        raise CheckpointCorrupt(f"{where}: cannot decode output: {exc}", key=where) from exc
    return make_record(fields, output)


def _plain_fields(raw: dict[str, Any]) -> Fields | None:
    """The record's fields if every one is present with its type, else ``None``.

    ``json`` builds only exact ``str``/``int``/``float`` (a ``bool`` is not an
    exact ``int``), so these exact type tests accept what ``required_field`` accepts,
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


def _checked_fields(raw: dict[str, Any], where: str) -> Fields:
    """Each field checked in turn: the first missing or mistyped one is ``CheckpointCorrupt``."""
    try:
        fields: Fields = (
            required_field(raw, "workflow_id", str),
            required_field(raw, "key", str),
            required_field(raw, "task_id", int),
            required_field(raw, "step", str),
            required_field(raw, "module", str),
            required_field(raw, "attempts", int),
            _timestamp(raw, "started_at"),
            _timestamp(raw, "finished_at"),
            required_field(raw, "input_digest", (str, type(None))),
            required_field(raw, "output_digest", str),
            required_field(raw, "code_hash", str),
            required_field(raw, "serializer", str),
        )
        if "output" not in raw:
            raise ValueError("field 'output' is missing")
    except ValueError as exc:
        raise CheckpointCorrupt(f"{where} is malformed: {exc}", key=where) from exc
    return fields


def _timestamp(raw: dict[str, Any], name: str) -> float:
    """A number as a float; a whole number too large for one is malformed, not ``OverflowError``."""
    try:
        return float(required_field(raw, name, (int, float)))
    except OverflowError:
        raise ValueError(f"field {name!r} is too large for a float") from None


_OUTPUT_MARK = b',"output":'


def output_tail(body: bytes) -> bytes | None:
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
