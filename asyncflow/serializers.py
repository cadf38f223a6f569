"""How step outputs become bytes in a checkpoint, and back.

``JSONSerializer`` (the default) is strict: a value is either stored so that
it decodes to an equal value of the *same type*, or refused with
``SerializationError`` before anything is written. Nothing is ever passed
through ``str()``.

Exact round-trip, via a tagged object ``{"__asyncflow__": tag, "v": ...}``:
``tuple``, ``set``, ``frozenset``, ``bytes``, ``bytearray``, ``datetime``,
``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, non-finite floats,
ints too long for a decimal JSON number (stored as hex), dicts with
non-``str`` keys (or with the tag key itself). Set items are stored sorted,
so equal sets encode to the same bytes in every process. ``datetime`` and
``time`` must be naive or carry a ``datetime.timezone`` offset that their ISO
text holds exactly (no named timezones, no sub-second offsets, ``fold=0``).

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
import json
import math
import pickle
import reprlib
import uuid
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from asyncflow._core.errors import SerializationError

__all__ = ["JSONSerializer", "PickleSerializer", "Serializer"]

TAG = "__asyncflow__"
_TAG_BYTES = TAG.encode()


@runtime_checkable
class Serializer(Protocol):
    """Turns an output into a JSON-compatible value stored inside the record.

    ``name`` is written into each record so that a record is never decoded
    by the wrong serializer.
    """

    name: str

    def encode(self, value: Any) -> Any: ...

    def decode(self, payload: Any) -> Any: ...


class JSONSerializer:
    """Strict JSON with tagged values for the common non-JSON types."""

    name = "json"

    def encode(self, value: Any) -> Any:
        try:
            return _encode(value, None)
        except _Refused as refused:
            raise SerializationError(refused.message()) from None
        except RecursionError:
            raise SerializationError(
                "cannot encode output: it is nested too deeply or contains a reference cycle"
            ) from None

    def decode(self, payload: Any) -> Any:
        return _decode(payload)


# ``path`` (where a value sits in the output, for error messages) is ``None``
# for the output itself, else ``(parent, segment)``: cheap to build, and only
# formatted when a value is refused.

#: Ints longer than this many bits are stored as hex: the decimal conversion
#: that ``json`` uses is limited by ``sys.set_int_max_str_digits`` (>= 640).
_MAX_PLAIN_INT_BITS = 2000


class _Refused(Exception):
    def __init__(self, value: Any, path: Any, reason: str = "") -> None:
        self.value = value
        self.path = path
        self.reason = reason

    def message(self) -> str:
        return _refusal(self.value, _format_path(self.path), self.reason)


def _format_path(path: Any) -> str:
    parts: list[str] = []
    while path is not None:
        path, segment = path
        if type(segment) is int:
            parts.append(f"[{segment}]")
        elif type(segment) is tuple:  # (key,): the value at a dict key
            parts.append(f"[{_short_repr(segment[0])}]")
        else:
            parts.append(segment)
    return "output" + "".join(reversed(parts))


def _short_repr(value: Any) -> str:
    try:
        return reprlib.repr(value)
    except Exception:  # e.g. an int too long for repr(), a broken __repr__
        return f"<{type(value).__name__}>"


def _tag(tag: str, v: Any) -> dict[str, Any]:
    return {TAG: tag, "v": v}


def _canonical(item: Any) -> str:
    return json.dumps(item, sort_keys=True, ensure_ascii=True, allow_nan=False)


def _sorted_items(encoded: list[Any]) -> list[Any]:
    """A total, process-independent order over encoded set items: strings first."""
    strings = sorted(item for item in encoded if type(item) is str)
    if len(strings) == len(encoded):
        return strings
    others = sorted((item for item in encoded if type(item) is not str), key=_canonical)
    return strings + others


def _encode(value: Any, path: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if value.bit_length() <= _MAX_PLAIN_INT_BITS:
            return value
        return _tag("int", hex(value))
    if kind is float:
        if math.isfinite(value):
            return value
        return _tag("float", repr(value))
    if kind is list:
        return [_encode(item, (path, i)) for i, item in enumerate(value)]
    if kind is dict:
        if TAG not in value and all(type(k) is str for k in value):
            return {k: _encode(v, (path, (k,))) for k, v in value.items()}
        return _tag(
            "dict",
            [[_encode(k, (path, "<key>")), _encode(v, (path, (k,)))] for k, v in value.items()],
        )
    if kind is tuple:
        return _tag("tuple", [_encode(item, (path, i)) for i, item in enumerate(value)])
    if kind is set or kind is frozenset:
        # Sorted, so that equal sets encode (and fingerprint) identically in
        # every process whatever its hash seed.
        items = _sorted_items([_encode(item, (path, "<item>")) for item in value])
        return _tag(kind.__name__, items)
    if kind is bytes or kind is bytearray:
        return _tag(kind.__name__, base64.b64encode(value).decode("ascii"))
    if kind is dt.datetime or kind is dt.time:
        if value.tzinfo is not None and type(value.tzinfo) is not dt.timezone:
            raise _Refused(
                value,
                path,
                f"its tzinfo {value.tzinfo!r} would come back as a fixed offset;"
                " convert it with .astimezone(datetime.timezone.utc) first",
            )
        text = value.isoformat()
        _check_exact(value, kind.fromisoformat(text), path)
        return _tag(kind.__name__, text)
    if kind is dt.date:
        return _tag("date", value.isoformat())
    if kind is dt.timedelta:
        return _tag("timedelta", [value.days, value.seconds, value.microseconds])
    if kind is Decimal:
        return _tag("decimal", str(value))
    if kind is uuid.UUID:
        return _tag("uuid", str(value))
    raise _Refused(value, path)


def _check_exact(value: Any, back: Any, path: Any) -> None:
    """Refuse a datetime/time that its ISO text does not carry exactly."""
    if (
        back == value
        and back.fold == value.fold
        and back.utcoffset() == value.utcoffset()
        and back.tzname() == value.tzname()
    ):
        return
    raise _Refused(
        value,
        path,
        f"{value!r} would come back as {back!r} (named timezones, sub-second UTC offsets"
        " and fold=1 are not stored); convert it with .astimezone(datetime.timezone.utc)"
        " or .replace(fold=0) first",
    )


def _refusal(value: Any, path: str, reason: str = "") -> str:
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if reason:
        return f"cannot encode {path} of type {name}: {reason}"
    hint = ""
    try:
        if hasattr(value, "__dataclass_fields__"):
            hint = "; return dataclasses.asdict(value) instead"
        elif hasattr(value, "model_dump"):
            hint = "; return value.model_dump(mode='json') instead"
        elif isinstance(value, (str, int, float, list, dict, tuple, set, frozenset, bytes)):
            base = next(k for k in kind.__mro__ if k.__module__ == "builtins" and k is not object)
            hint = f"; subclasses of built-in types would come back as plain {base.__name__}"
    except Exception:  # a hostile __getattr__ must not hide the refusal
        hint = ""
    return (
        f"cannot encode {path} of type {name} as JSON exactly{hint}"
        " (or use PickleSerializer on trusted storage)"
    )


_DECODERS: dict[str, Any] = {
    "int": lambda v: int(v, 16),
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


def untagged(data: bytes) -> bool:
    """True if the JSON text ``data`` surely holds no tagged value (not public API).

    Then ``JSONSerializer.decode`` of what ``json`` parsed from it is that
    value itself, and resume can skip walking every output. A tag is a dict
    key, so its name would appear verbatim unless spelled with ``\\u``
    escapes, which send the text to the full walk too.
    """
    return _TAG_BYTES not in data and b"\\u" not in data


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
