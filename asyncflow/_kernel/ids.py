"""Validation of workflow ids, task keys and storage keys.

Ids become path segments on every backend, so they are held to a portable,
boring alphabet: a hostile or merely odd id must fail loudly here instead of
escaping the storage root or colliding with another id after normalisation.
"""

from __future__ import annotations

import re
import reprlib

from asyncflow._kernel.errors import ConfigurationError

__all__ = ["MAX_ID_LENGTH", "validate_id", "validate_storage_key"]

MAX_ID_LENGTH = 128
_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_MAX_KEY_LENGTH = 1024
# The same segment rule over a whole key in one match: backends check every
# key on every call, so this is on the path of each checkpoint.
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")


def validate_id(value: object, what: str) -> str:
    """Return ``value`` if it is a safe id, else raise ``ConfigurationError`` naming ``what``.

    ASCII letters, digits, ``_``, ``-`` and ``.``; not starting with ``.`` or
    ``-``; at most 128 characters. Unicode is refused rather than normalised,
    because two spellings of one name must never share or split a checkpoint.
    """
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{what} must be a str, got {type(value).__name__}: {reprlib.repr(value)}"
        )
    if not value:
        raise ConfigurationError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ConfigurationError(
            f"{what} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
        )
    if _ID.fullmatch(value) is None:
        raise ConfigurationError(
            f"{what} {value!r} is not allowed: use ASCII letters, digits, '_', '-' and '.',"
            " not starting with '.' or '-'"
        )
    return value


def validate_storage_key(key: object) -> str:
    """Check a backend key: ``/``-separated safe segments, relative, no ``..``.

    Backends call this on every key so that a caller bypassing the engine
    still cannot read or write outside the root.
    """
    if not isinstance(key, str):
        raise ConfigurationError(f"storage key must be a str, got {type(key).__name__}")
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise ConfigurationError(f"storage key {key[:80]!r} is empty or too long")
    if _KEY.fullmatch(key) is not None:
        return key
    for segment in key.split("/"):
        if _SEGMENT.fullmatch(segment) is None:
            raise ConfigurationError(
                f"storage key {key[:200]!r} has an unsafe segment {segment[:80]!r}"
            )
    return key
