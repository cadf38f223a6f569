"""How step outputs become bytes in a checkpoint, and back.

``JSONSerializer`` (the default) is strict: a value is either stored so that
it decodes to an equal value of the *same type*, or refused with
``SerializationError`` before anything is written. Nothing is ever passed
through ``str()``.

Exact round-trip, via a tagged object ``{"__asyncflow__": tag, "v": ...}``:
``tuple``, ``set``, ``frozenset``, ``bytes``, ``bytearray``, ``datetime``,
``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, non-finite floats,
dicts with non-``str`` keys (or with the tag key itself).

Refused (convert first, or opt into ``PickleSerializer``): dataclasses,
pydantic models, enums, and subclasses of the built-in types (``IntEnum``,
``namedtuple``, ``OrderedDict``...), because decoding them would either
change their type silently or import code named by the record.

``PickleSerializer`` stores anything picklable. Unpickling runs code chosen by
whoever wrote the record: use it only on storage that only you can write, or
together with ``Config(signing_key=...)``.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import pickle
import uuid
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from asyncflow._core.errors import SerializationError

__all__ = ["JSONSerializer", "PickleSerializer", "Serializer"]

TAG = "__asyncflow__"


@runtime_checkable
class Serializer(Protocol):
    """Turns an output into a JSON-compatible value stored inside the record.

    ``name`` is written into each record so that a record is never decoded
    by the wrong serializer.
    """

    name: str

    def encode(self, value: Any) -> Any: ...

    def decode(self, payload: Any) -> Any: ...


_SCALARS = (str, int, bool, type(None))


class JSONSerializer:
    """Strict JSON with tagged values for the common non-JSON types."""

    name = "json"

    def encode(self, value: Any) -> Any:
        return _encode(value, "output")

    def decode(self, payload: Any) -> Any:
        return _decode(payload)


def _tag(tag: str, v: Any) -> dict[str, Any]:
    return {TAG: tag, "v": v}


def _encode(value: Any, path: str) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        return _tag("float", repr(value))
    if kind is list:
        return [_encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind is dict:
        if TAG not in value and all(type(k) is str for k in value):
            return {k: _encode(v, f"{path}[{k!r}]") for k, v in value.items()}
        return _tag(
            "dict",
            [[_encode(k, f"{path}<key>"), _encode(v, f"{path}[{k!r}]")] for k, v in value.items()],
        )
    if kind is tuple:
        return _tag("tuple", [_encode(item, f"{path}[{i}]") for i, item in enumerate(value)])
    if kind is set or kind is frozenset:
        items = [_encode(item, f"{path}<item>") for item in value]
        return _tag(kind.__name__, items)
    if kind is bytes or kind is bytearray:
        return _tag(kind.__name__, base64.b64encode(value).decode("ascii"))
    if kind is dt.datetime or kind is dt.time:
        if value.tzinfo is not None and type(value.tzinfo) is not dt.timezone:
            raise SerializationError(
                f"cannot encode {path}: its tzinfo {value.tzinfo!r} would come back as a fixed"
                " offset; convert it with .astimezone(datetime.timezone.utc) first"
            )
        return _tag(kind.__name__, value.isoformat())
    if kind is dt.date:
        return _tag("date", value.isoformat())
    if kind is dt.timedelta:
        return _tag("timedelta", [value.days, value.seconds, value.microseconds])
    if kind is Decimal:
        return _tag("decimal", str(value))
    if kind is uuid.UUID:
        return _tag("uuid", str(value))
    raise SerializationError(_refusal(value, path))


def _refusal(value: Any, path: str) -> str:
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    hint = ""
    if hasattr(value, "__dataclass_fields__"):
        hint = "; return dataclasses.asdict(value) instead"
    elif hasattr(value, "model_dump"):
        hint = "; return value.model_dump(mode='json') instead"
    elif isinstance(value, (str, int, float, list, dict, tuple, set, frozenset, bytes)):
        hint = f"; subclasses of built-in types would come back as plain {kind.__mro__[1].__name__}"
    return (
        f"cannot encode {path} of type {name} as JSON exactly{hint}"
        " (or use PickleSerializer on trusted storage)"
    )


_DECODERS: dict[str, Any] = {
    "float": float,
    "tuple": lambda v: tuple(_decode(i) for i in v),
    "set": lambda v: {_decode(i) for i in v},
    "frozenset": lambda v: frozenset(_decode(i) for i in v),
    "bytes": lambda v: base64.b64decode(v, validate=True),
    "bytearray": lambda v: bytearray(base64.b64decode(v, validate=True)),
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "dict": lambda v: {_decode(k): _decode(i) for k, i in v},
}


def _decode(payload: Any) -> Any:
    kind = type(payload)
    if kind is list:
        return [_decode(item) for item in payload]
    if kind is dict:
        tag = payload.get(TAG)
        if tag is None:
            return {k: _decode(v) for k, v in payload.items()}
        decoder = _DECODERS.get(tag)
        if decoder is None or set(payload) != {TAG, "v"}:
            raise ValueError(f"unknown tagged value {tag!r}")
        return decoder(payload["v"])
    return payload


class PickleSerializer:
    """Any picklable output, stored base64-encoded. Trusted storage only."""

    name = "pickle"

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def encode(self, value: Any) -> Any:
        try:
            data = pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:
            raise SerializationError(
                f"cannot pickle output of type {type(value).__qualname__}: {exc}"
            ) from exc
        return base64.b64encode(data).decode("ascii")

    def decode(self, payload: Any) -> Any:
        return pickle.loads(base64.b64decode(payload, validate=True))
