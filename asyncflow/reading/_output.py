"""A task's stored output as text, for a task page: bounded, never decoded.

The payload is shown as the record stores it (pretty-printed JSON): a
serializer's ``decode`` never runs, so a pickled output is never unpickled
and a tagged value shows as its tagged JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from asyncflow._kernel.blobs import parse_ref
from asyncflow._kernel.checkpoint import FORMAT_BLOB, SIG_PREFIX
from asyncflow._kernel.codec import loads

__all__ = ["PREVIEW_CHARS", "PREVIEW_MAX_BYTES", "OutputPreview", "output_preview"]

PREVIEW_CHARS = 4000
#: A record larger than this is not parsed for a preview: the page stays fast.
PREVIEW_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class OutputPreview:
    """The start of a task's stored output, as text; never decoded by its serializer."""

    serializer: str
    size: int
    text: str | None
    truncated: bool
    note: str | None = None


def output_preview(data: bytes) -> OutputPreview:
    """The start of a record's ``output`` payload as stored, pretty-printed when it is JSON."""
    size = len(data)
    if data.startswith(SIG_PREFIX):
        data = data.partition(b"\n")[2]
    if size > PREVIEW_MAX_BYTES:
        return OutputPreview("?", size, None, False, "the record is too large to preview here")
    try:
        raw: Any = loads(data)
    except ValueError as exc:
        return OutputPreview("?", size, None, False, f"the record is not valid JSON: {exc}")
    if not isinstance(raw, dict) or "output" not in raw:
        return OutputPreview("?", size, None, False, "the record holds no output")
    serializer = raw.get("serializer")
    serializer = serializer if isinstance(serializer, str) else "?"
    payload = raw["output"]
    ref = parse_ref(payload) if raw.get("asyncflow") == FORMAT_BLOB else None
    if ref is not None:
        return OutputPreview(
            serializer,
            size,
            None,
            False,
            f"a large output, stored once in blobs/{ref[0]} ({ref[1]} bytes): not read here",
        )
    if serializer == "pickle":
        length = len(payload) if isinstance(payload, str) else 0
        return OutputPreview(
            serializer,
            size,
            None,
            False,
            f"a pickled output ({length} base64 characters): the viewer never unpickles",
        )
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    truncated = len(text) > PREVIEW_CHARS
    note = None if serializer == "json" else f"as stored by the {serializer!r} serializer"
    return OutputPreview(serializer, size, text[:PREVIEW_CHARS], truncated, note)
