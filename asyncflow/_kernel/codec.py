"""The canonical JSON of every asyncflow record, and the checks of its fields.

Records, run files, signals and summaries share one strict encoding (ASCII,
no NaN, a bounded depth) so that what one version writes another reads back
exactly; the field readers turn a malformed record into a ``ValueError``
naming the field instead of a ``KeyError`` deep in the engine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = [
    "deps_dict",
    "digest",
    "dumps",
    "int_dict",
    "loads",
    "optional_field",
    "optional_float",
    "required_field",
    "str_dict",
    "str_tuple",
    "text_json",
    "waiting_dict",
]


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
_text = json.encoder.encode_basestring_ascii
#: A str as ``dumps`` writes it (quoted, ASCII-escaped): for formatting records directly.
text_json = _text


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


def str_tuple(values: list[Any], name: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(type(v) is str for v in values):
        raise ValueError(f"field {name!r} must be a list of strings")
    return tuple(values)


def str_dict(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(type(v) is str for v in value.values()):
        raise ValueError(f"field {name!r} must map strings to strings")
    return dict(value)


def deps_dict(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ValueError("field 'depends_on' must map keys to lists of keys")
    return {key: str_tuple(deps, "depends_on") for key, deps in value.items()}


def int_dict(value: Any, name: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(type(v) is int and v >= 0 for v in value.values()):
        raise ValueError(f"field {name!r} must map strings to counts")
    return dict(value)


def waiting_dict(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("field 'waiting' must map keys to objects")
    return dict(value)


def optional_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"field {name!r} must be a number or null")
    return float(value)


def optional_field(raw: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """An optional field: absent or null is ``None``; present, it must have its type."""
    if raw.get(name) is None:
        return None
    return required_field(raw, name, kind)


def required_field(raw: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = raw.get(name)
    if name not in raw or not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"field {name!r} is missing or has the wrong type")
    return value
