"""A pack: the task records of an ended run in one object, an extra verified copy.

``{workflow_id}/pack/tasks.pack`` (``layout.pack_key``) holds, for each task
record, its bytes exactly as stored under ``tasks/`` and the token a listing
gave the record when the pack was written (``list_versions``). A resume
uses an entry only while one listing of ``tasks/`` still gives its record
that token (``asyncflow._kernel.snapshot``): the records stay the truth,
and the pack saves reading them one by one.

The object, in bytes::

    [asyncflow-hmac-sha256:<hex>\\n]     with Config(signing_key=...): covers the rest
    asyncflow-pack 1 sha256=<hex>\\n     the format and the SHA-256 of the body
    {header JSON}\\n                     workflow, run, status, [[key, token, length], ...]
    <record bytes><record bytes>...      each entry's record, back to back

The digest makes a torn or altered pack ``CheckpointCorrupt`` naming it,
never a silent re-run; the signature (when a key is set) makes it
unforgeable, as each record inside already is. Offloaded outputs are not
copied: a record refers to its blob under ``blobs/`` as it does on its own.
A pack of a newer format than this version knows is left unused: its
records are read instead.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from asyncflow._kernel.checkpoint import SIG_PREFIX, sign, verify
from asyncflow._kernel.codec import dumps, loads
from asyncflow._kernel.errors import CheckpointCorrupt

__all__ = ["PACK_FORMAT", "PACK_MAX_BYTES", "Pack", "decode_pack", "encode_pack"]

PACK_FORMAT = 1
#: A run whose records add up to more is not packed: a resume holds its pack
#: in memory whole, and one object of gigabytes is no cheaper to fetch than
#: the records themselves.
PACK_MAX_BYTES = 128 * 1024 * 1024
_MAGIC = b"asyncflow-pack "


@dataclass(frozen=True, slots=True)
class Pack:
    """A decoded pack: each task key's ``(token, record bytes)``, and the run that wrote it."""

    workflow_id: str
    run_id: str | None
    status: str
    written_at: float
    entries: dict[str, tuple[str, bytes]]


def encode_pack(
    workflow_id: str,
    run_id: str | None,
    status: str,
    entries: Iterable[tuple[str, str, bytes]],
    signing_key: bytes | None,
) -> bytes:
    """The pack of ``(task key, token, record bytes)`` entries, signed when a key is given."""
    table: list[list[object]] = []
    parts: list[bytes] = []
    for key, token, data in entries:
        table.append([key, token, len(data)])
        parts.append(data)
    header = dumps(
        {
            "workflow_id": workflow_id,
            "run_id": run_id,
            "status": status,
            "written_at": time.time(),
            "entries": table,
        }
    )
    body = b"".join((header, b"\n", *parts))
    head = b"%s%d sha256=%s\n" % (_MAGIC, PACK_FORMAT, hashlib.sha256(body).hexdigest().encode())
    return sign(head + body, signing_key)


def decode_pack(
    data: bytes,
    where: str,
    workflow_id: str,
    signing_key: bytes | None,
    *,
    check_signature: bool = True,
) -> Pack | None:
    """The pack in ``data``; ``None`` for a newer format (its records are read instead).

    ``CheckpointCorrupt`` naming ``where`` when it is torn, altered, unsigned
    under a ``signing_key`` (or signed without one), or of another workflow.
    ``check_signature=False`` (a reader without the key: the viewer, ``status``)
    still checks the digest, not who wrote it.
    """
    if check_signature:
        data = verify(data, signing_key, where)
    elif data.startswith(SIG_PREFIX):
        data = data.partition(b"\n")[2]
    # Offsets into ``data``, not partitions: a pack of 10,000 records is
    # megabytes, and each partition would copy it.
    first = data.find(b"\n")
    fields = data[:first].split(b" ") if first >= 0 else []
    if len(fields) != 3 or data[: len(_MAGIC)] != _MAGIC:
        raise _corrupt(where, "it is not an asyncflow pack (its first line is not one)")
    if not fields[1].isdigit():
        raise _corrupt(where, f"its format {fields[1][:20]!r} is not a number")
    if int(fields[1]) > PACK_FORMAT:
        return None
    view = memoryview(data)
    if fields[2] != b"sha256=" + hashlib.sha256(view[first + 1 :]).hexdigest().encode():
        raise _corrupt(where, "it is torn or altered: its content does not match its SHA-256")
    end = data.find(b"\n", first + 1)
    try:
        if end < 0:
            raise ValueError("no header line")
        header = loads(data[first + 1 : end])
        entries = _entries(header, data, end + 1)
        run_id, status = header.get("run_id"), header.get("status")
        written_at = float(header.get("written_at", 0.0))
        if not (run_id is None or isinstance(run_id, str)) or not isinstance(status, str):
            raise ValueError("run_id or status is not a string")
    except (ValueError, TypeError, KeyError) as exc:
        raise _corrupt(where, f"its header is malformed: {exc}") from exc
    if header["workflow_id"] != workflow_id:
        raise _corrupt(where, f"it packs workflow {header['workflow_id']!r}, not {workflow_id!r}")
    return Pack(workflow_id, run_id, status, written_at, entries)


def _entries(header: object, data: bytes, start: int) -> dict[str, tuple[str, bytes]]:
    """Each entry's ``(token, record bytes)``, the records laid back to back from ``start``.

    Keys are only looked up, never used to build a storage key, so they are
    checked for type, not against the id alphabet (a key no task has is
    never asked for).
    """
    if not isinstance(header, dict) or not isinstance(header.get("entries"), list):
        raise ValueError("no entries")
    if not isinstance(header.get("workflow_id"), str):
        raise ValueError("no workflow_id")
    found: dict[str, tuple[str, bytes]] = {}
    for entry in header["entries"]:
        if not (
            type(entry) is list
            and len(entry) == 3
            and type(entry[0]) is str
            and type(entry[1]) is str
            and type(entry[2]) is int
            and entry[2] >= 0
        ):
            raise ValueError(f"entry {str(entry)[:80]} is not [key, token, length]")
        key, token, length = entry
        if key in found:
            raise ValueError(f"task key {key!r} is packed twice")
        found[key] = (token, data[start : start + length])
        start += length
    if start != len(data):
        raise ValueError(f"its entries end at byte {start}, the pack at {len(data)}")
    return found


def _corrupt(where: str, why: str) -> CheckpointCorrupt:
    return CheckpointCorrupt(
        f"pack {where}: {why}; delete it to resume from the task records themselves",
        key=where,
    )
