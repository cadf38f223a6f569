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

Your own types round-trip exactly once registered (``Config(types=[...])``,
see ``asyncflow._kernel.registry``): dataclasses, enums, NamedTuples, Pydantic
v2 models, msgspec Structs and attrs classes, nested in each other and in
the types above. Decoding builds only registered classes, looked up by name;
it never imports a name found in a record.

Refused (register or convert first, or opt into ``PickleSerializer``):
unregistered classes, and subclasses of the built-in types (``OrderedDict``,
``defaultdict``...), because decoding them would either change their type
silently or import code named by the record. So is an output nested more
than ``MAX_DEPTH`` levels deep as stored: whatever is written can be read.

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
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from asyncflow._kernel.errors import SerializationError
from asyncflow._kernel.registry import Registered, TypeRegistry, kind_of

__all__ = ["MAX_DEPTH", "JSONSerializer", "PickleSerializer", "Serializer"]

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
    """Strict JSON with tagged values for the common non-JSON types and registered ones.

    ``types`` (a list of classes, or a dict of stored name to class) are the
    user's own types that round-trip exactly; ``Config(types=...)`` builds
    the serializer with them. The name stays ``"json"`` whatever is
    registered, so records written before a type was registered still decode.
    """

    name = "json"

    def __init__(self, types: Iterable[type] | Mapping[str, type] | TypeRegistry = ()) -> None:
        self.registry = types if isinstance(types, TypeRegistry) else TypeRegistry(types)
        self._by_class = self.registry.by_class

    def with_types(self, types: Iterable[type] | Mapping[str, type]) -> JSONSerializer:
        """A serializer that also knows ``types``."""
        return JSONSerializer(self.registry.merged(TypeRegistry(types)))

    def encode(self, value: Any) -> Any:
        try:
            return _encode(value, 0, self._by_class)
        except _Refused as refused:
            raise SerializationError(refused.message()) from None
        except RecursionError:
            raise SerializationError(
                "cannot encode output: it is nested too deeply for this thread's recursion limit"
            ) from None

    def decode(self, payload: Any) -> Any:
        return _decode(payload, self.registry)

    def __repr__(self) -> str:
        names = ", ".join(sorted(self.registry.by_name))
        return f"JSONSerializer(types=[{names}])" if names else "JSONSerializer()"


#: The deepest nesting of JSON containers (lists, objects) an encoded output
#: may have. Decoding recurses once or twice per level, so a limit well under
#: the default recursion limit guarantees that whatever is written can be read
#: back, even from a deep call stack: no output is written and then unreadable.
MAX_DEPTH = 256

#: Ints longer than this many bits are stored as hex: the decimal conversion
#: that ``json`` uses is limited by ``sys.set_int_max_str_digits`` (>= 640).
_MAX_PLAIN_INT_BITS = 2000


class _Refused(Exception):
    """``path`` collects the segments from the value up to the output, as it unwinds."""

    def __init__(self, value: Any, reason: str = "") -> None:
        self.value = value
        self.path: list[Any] = []
        self.reason = reason

    def message(self) -> str:
        return _refusal(self.value, _format_path(self.path), self.reason)


class _TooDeep(_Refused):
    def message(self) -> str:
        return (
            f"cannot encode output: it is nested too deeply (more than {MAX_DEPTH} levels as"
            " stored) or contains a reference cycle; every value written must read back"
        )


def _too_deep(value: Any) -> _Refused:
    return _TooDeep(value)


def _format_path(path: list[Any]) -> str:
    parts: list[str] = []
    for segment in reversed(path):
        if type(segment) is int:
            parts.append(f"[{segment}]")
        elif type(segment) is tuple:  # (key,): the value at a dict key
            parts.append(f"[{_short_repr(segment[0])}]")
        else:
            parts.append(segment)
    return "output" + "".join(parts)


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


def _encode_list(value: Any, depth: int, types: dict[type, Registered]) -> list[Any]:
    """Always a new list (for tagged forms)."""
    out = []
    i = 0
    try:
        for i, item in enumerate(value):  # noqa: B007
            out.append(_encode(item, depth, types))
    except _Refused as refused:
        refused.path.append(i)
        raise
    return out


def _encode(value: Any, depth: int, types: dict[type, Registered]) -> Any:
    """The JSON-ready form of ``value``; ``value`` itself when it is plain JSON already.

    Containers are copied only from the first item that needed a tag on, so
    a plain JSON output (the common case, and the large one) is walked once
    and never copied. ``depth`` counts the JSON containers around ``value``.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if value.bit_length() <= _MAX_PLAIN_INT_BITS:
            return value
        if depth >= MAX_DEPTH:
            raise _too_deep(value)
        return _tag("int", hex(value))
    if kind is float:
        if math.isfinite(value):
            return value
        if depth >= MAX_DEPTH:
            raise _too_deep(value)
        return _tag("float", repr(value))
    if depth >= MAX_DEPTH:
        raise _too_deep(value)
    inner = depth + 1
    if kind is list:
        out: list[Any] | None = None
        i = 0
        try:
            for i, item in enumerate(value):
                encoded = _encode(item, inner, types)
                if out is not None:
                    out.append(encoded)
                elif encoded is not item:
                    out = value[:i]
                    out.append(encoded)
        except _Refused as refused:
            refused.path.append(i)
            raise
        return value if out is None else out
    if kind is dict:
        if TAG not in value and all(type(k) is str for k in value):
            copy: dict[str, Any] | None = None
            k = None
            try:
                for k, v in value.items():
                    encoded = _encode(v, inner, types)
                    if copy is not None:
                        copy[k] = encoded
                    elif encoded is not v:
                        copy = {}
                        for before, kept in value.items():
                            if before is k:
                                break
                            copy[before] = kept
                        copy[k] = encoded
            except _Refused as refused:
                refused.path.append((k,))
                raise
            return value if copy is None else copy
        if depth + 3 > MAX_DEPTH:
            raise _too_deep(value)
        pairs = []
        k = None
        for k, v in value.items():
            try:
                key = _encode(k, depth + 3, types)
            except _Refused as refused:
                refused.path.append("<key>")
                raise
            try:
                pairs.append([key, _encode(v, depth + 3, types)])
            except _Refused as refused:
                refused.path.append((k,))
                raise
        return _tag("dict", pairs)
    if kind is tuple:
        if depth + 2 > MAX_DEPTH:
            raise _too_deep(value)
        return _tag("tuple", _encode_list(value, depth + 2, types))
    if kind is set or kind is frozenset:
        if depth + 2 > MAX_DEPTH:
            raise _too_deep(value)
        # Sorted, so that equal sets encode (and fingerprint) identically in
        # every process whatever its hash seed.
        try:
            items = _sorted_items([_encode(item, depth + 2, types) for item in value])
        except _Refused as refused:
            refused.path.append("<item>")
            raise
        return _tag(kind.__name__, items)
    if kind is bytes or kind is bytearray:
        return _tag(kind.__name__, base64.b64encode(value).decode("ascii"))
    if kind is dt.datetime or kind is dt.time:
        if value.tzinfo is not None and type(value.tzinfo) is not dt.timezone:
            raise _Refused(
                value,
                f"its tzinfo {value.tzinfo!r} would come back as a fixed offset;"
                " convert it with .astimezone(datetime.timezone.utc) first",
            )
        text = value.isoformat()
        _check_exact(value, kind.fromisoformat(text))
        return _tag(kind.__name__, text)
    if kind is dt.date:
        return _tag("date", value.isoformat())
    if kind is dt.timedelta:
        if depth + 2 > MAX_DEPTH:
            raise _too_deep(value)
        return _tag("timedelta", [value.days, value.seconds, value.microseconds])
    if kind is Decimal:
        return _tag("decimal", str(value))
    if kind is uuid.UUID:
        return _tag("uuid", str(value))
    entry = types.get(kind)
    if entry is None:
        raise _Refused(value)
    return _encode_registered(entry, value, depth, types)


def _encode_registered(
    entry: Registered, value: Any, depth: int, types: dict[type, Registered]
) -> dict[str, Any]:
    state, more = entry.state(value)
    if entry.kind == "enum":
        try:
            v = _encode(state, depth + 1, types)
        except _Refused as refused:
            refused.path.append(".value")
            raise
    else:
        if depth + 2 > MAX_DEPTH:
            raise _too_deep(value)
        v = {}
        name = ""
        try:
            for name, item in state.items():
                v[name] = _encode(item, depth + 2, types)
        except _Refused as refused:
            refused.path.append(f".{name}")
            raise
    out = {TAG: "type", "name": entry.name, "v": v}
    for key, item in more.items():
        out[key] = _encode(item, depth + 1, types)
    return out


def _check_exact(value: Any, back: Any) -> None:
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
        if kind_of(kind) is not None:
            hint = (
                f"; register it to store it exactly: Config(types=[{kind.__qualname__}])"
                " (see docs/serialization.md)"
            )
        elif isinstance(value, (str, int, float, list, dict, tuple, set, frozenset, bytes)):
            base = next(k for k in kind.__mro__ if k.__module__ == "builtins" and k is not object)
            hint = f"; subclasses of built-in types would come back as plain {base.__name__}"
    except Exception:  # a hostile __getattr__ must not hide the refusal
        hint = ""
    if hint.startswith("; register"):
        return f"cannot encode {path} of type {name}: it is not registered{hint}"
    return (
        f"cannot encode {path} of type {name} as JSON exactly{hint}"
        " (or use PickleSerializer on trusted storage)"
    )


def _b64(v: Any) -> bytes:
    return base64.b64decode(v, validate=True)


_SCALARS: dict[str, Any] = {
    "int": lambda v: int(v, 16),
    "float": float,
    "bytes": _b64,
    "bytearray": lambda v: bytearray(_b64(v)),
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "uuid": uuid.UUID,
}
_TYPE_KEYS = frozenset({TAG, "name", "v", "set", "extra"})


def untagged(data: bytes) -> bool:
    """True if the JSON text ``data`` surely holds no tagged value (not public API).

    Then ``JSONSerializer.decode`` of what ``json`` parsed from it is that
    value itself, and resume can skip walking every output. A tag is a dict
    key, so its name would appear verbatim unless spelled with ``\\u``
    escapes, which send the text to the full walk too.
    """
    return _TAG_BYTES not in data and b"\\u" not in data


def _decode(payload: Any, registry: TypeRegistry) -> Any:
    kind = type(payload)
    if kind is list:
        out = []
        for item in payload:
            out.append(_decode(item, registry))
        return out
    if kind is not dict:
        return payload
    tag = payload.get(TAG)
    if tag is None:
        plain = {}
        for k, item in payload.items():
            plain[k] = _decode(item, registry)
        return plain
    if tag == "type":
        return _decode_registered(payload, registry)
    if set(payload) != {TAG, "v"}:
        raise ValueError(f"tagged value {tag!r} has unexpected keys")
    v = payload["v"]
    if tag == "tuple" or tag == "set" or tag == "frozenset":
        if type(v) is not list:
            raise ValueError(f"tagged value {tag!r} does not hold a list")
        items = []
        for item in v:
            items.append(_decode(item, registry))
        return tuple(items) if tag == "tuple" else set(items) if tag == "set" else frozenset(items)
    if tag == "dict":
        out_dict = {}
        for k, item in v:
            out_dict[_decode(k, registry)] = _decode(item, registry)
        return out_dict
    decoder = _SCALARS.get(tag) if type(tag) is str else None
    if decoder is None:
        raise ValueError(f"unknown tagged value {tag!r}")
    return decoder(v)


def _decode_registered(payload: dict[str, Any], registry: TypeRegistry) -> Any:
    if not payload.keys() <= _TYPE_KEYS or "name" not in payload or "v" not in payload:
        raise ValueError("tagged value 'type' has unexpected keys")
    entry = registry.lookup(payload["name"])
    v = payload["v"]
    if entry.kind == "enum":
        state = _decode(v, registry)
    elif type(v) is dict:
        state = {}
        for k, item in v.items():
            state[k] = _decode(item, registry)
    else:
        raise ValueError(f"the state of type {entry.name!r} is not a dict of fields")
    more: dict[str, Any] = {
        k: _decode(payload[k], registry) for k in ("set", "extra") if k in payload
    }
    return entry.build(state, more)


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
