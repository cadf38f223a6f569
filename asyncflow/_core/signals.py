"""Signals: a named, one-shot message to a workflow, stored at ``{wf}/signals/{name}.json``.

A signal is written with a conditional create, so of two senders of one name
exactly one wins and the other gets ``PreconditionFailed``: the waiting step
sees one payload, ever. It is refused, before anything is written, when no
run could ever take it: a workflow that does not exist (a mistyped id would
otherwise approve a brand-new run with that id later; ``before_start=True``
says it is meant for a first start to come), a completed run, or a payload
over the size a step's output may have. A run blocked on a signal in this process is woken at
once through an in-process registry (keyed by workflow id and name, so a
sender using another storage object for the same place still wakes it); a
run in another process sees it at its next poll.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel

from asyncflow._core.config import DEFAULT_MAX_OUTPUT_BYTES
from asyncflow._kernel.codec import dumps, loads
from asyncflow._kernel.errors import (
    CheckpointCorrupt,
    ConfigurationError,
    PreconditionFailed,
    SerializationError,
)
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.layout import signal_key, signal_prefix
from asyncflow._kernel.serializers import JSONSerializer
from asyncflow._kernel.shape import close_matches
from asyncflow._kernel.storage import Storage
from asyncflow.reading import read_manifest, workflow_ids

__all__ = [
    "SignalRecord",
    "read_signal",
    "send_signal",
    "signal_names",
    "waiter",
]

_JSON = JSONSerializer()


@dataclass(frozen=True, slots=True)
class SignalRecord:
    workflow_id: str
    name: str
    sent_at: float
    payload: Any


def _encode(
    workflow_id: str, name: str, payload: Any, max_bytes: int | None, before_start: bool
) -> bytes:
    try:
        body = dumps(_JSON.encode(payload))
    except (SerializationError, TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"signal {name!r} to workflow {workflow_id}: the payload cannot be stored as JSON"
            f" ({type(payload).__qualname__}): {exc}"
        ) from None
    if max_bytes is not None and len(body) > max_bytes:
        raise SerializationError(
            f"signal {name!r} to workflow {workflow_id}: its payload is {len(body):,} bytes"
            f" encoded, over the limit of {max_bytes:,} (the waiting step's output would be"
            " refused: Config(max_output_bytes=...)); nothing was sent. Send less (e.g. a"
            " path or an object-store key to the data), or raise the flow's limit and"
            " send with max_bytes= the same"
        )
    header: dict[str, Any] = {
        "asyncflow": 1,
        "kind": "signal",
        "workflow_id": workflow_id,
        "name": name,
        "sent_at": time.time(),
    }
    if before_start:
        header["before_start"] = True
    return dumps(header)[:-1] + b',"payload":' + body + b"}"


def _decode(data: bytes, where: str, workflow_id: str, name: str) -> SignalRecord:
    try:
        raw = loads(data)
        if not isinstance(raw, dict) or raw.get("kind") != "signal" or "payload" not in raw:
            raise ValueError("not an asyncflow signal")
        if raw.get("workflow_id") != workflow_id or raw.get("name") != name:
            raise ValueError(f"it belongs to {raw.get('workflow_id')!r} {raw.get('name')!r}")
        sent_at = raw.get("sent_at")
        if isinstance(sent_at, bool) or not isinstance(sent_at, (int, float)):
            raise ValueError("field 'sent_at' is missing or not a number")
        payload = _JSON.decode(raw["payload"])
    except (ValueError, TypeError) as exc:
        raise CheckpointCorrupt(f"{where} is not a valid signal: {exc}", key=where) from exc
    return SignalRecord(workflow_id, name, float(sent_at), payload)


async def _check_recipient(
    storage: Storage, workflow_id: str, name: str, before_start: bool
) -> None:
    """Refuse a signal that no run of ``workflow_id`` could take."""
    manifest = await read_manifest(storage, workflow_id)
    if manifest is None and before_start:
        return
    if manifest is None:
        known = [w for w in await workflow_ids(storage) if w != workflow_id]
        raise ConfigurationError(
            f"no workflow {workflow_id}{close_matches(workflow_id, known)}: signal {name!r}"
            " was not sent. To send it before the workflow's first start, pass"
            " before_start=True (asyncflow signal --before-start)"
        )
    if manifest.status == "completed":
        raise ConfigurationError(
            f"workflow {workflow_id} has completed: no step will ever take signal {name!r},"
            " so it was not sent (a fresh start begins a new execution, without signals)"
        )


async def send_signal(
    storage: Storage,
    workflow_id: str,
    name: str,
    payload: Any = None,
    *,
    before_start: bool = False,
    max_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
) -> SignalRecord:
    """Store a signal once; a second send of the same name raises ``PreconditionFailed``.

    ``ConfigurationError`` for a workflow that does not exist (unless
    ``before_start``) or has completed (``before_start`` or not: it has
    started); ``SerializationError`` for a payload JSON cannot carry or
    over ``max_bytes`` encoded.
    """
    validate_id(workflow_id, "workflow_id")
    validate_id(name, "signal name")
    if not isinstance(before_start, bool):
        raise ConfigurationError(f"before_start must be a bool, got {before_start!r}")
    if max_bytes is not None and (type(max_bytes) is not int or max_bytes < 1):
        raise ConfigurationError(f"max_bytes must be an int >= 1 or None, got {max_bytes!r}")
    data = _encode(workflow_id, name, payload, max_bytes, before_start)
    await _check_recipient(storage, workflow_id, name, before_start)
    where = signal_key(workflow_id, name)
    try:
        await storage.write(where, data, if_absent=True)
    except PreconditionFailed:
        raise PreconditionFailed(
            f"signal {name!r} was already sent to workflow {workflow_id}: a signal is"
            " delivered once; use another name for another message"
        ) from None
    _wake(workflow_id, name)
    return _decode(data, where, workflow_id, name)


async def read_signal(storage: Storage, workflow_id: str, name: str) -> SignalRecord | None:
    where = signal_key(workflow_id, name)
    blob = await storage.read(where)
    return None if blob is None else _decode(blob.data, where, workflow_id, name)


async def signal_names(storage: Storage, workflow_id: str) -> set[str]:
    """The names of the signals sent to ``workflow_id``: one listing."""
    prefix = signal_prefix(workflow_id)
    return {
        key[len(prefix) : -len(".json")]
        async for key in storage.list(prefix)
        if key.endswith(".json") and "/" not in key[len(prefix) :]
    }


# (workflow id, name) -> events of the runs blocked on it in this process, with
# the event loop each belongs to (an event is only ever set from its own loop).
_waiters: dict[tuple[str, str], list[tuple[anyio.Event, object]]] = {}


class waiter:
    """Register a blocked run for an in-process wake-up while inside the block."""

    def __init__(self, workflow_id: str, name: str) -> None:
        self._slot = (workflow_id, name)
        self._entry = (anyio.Event(), anyio.lowlevel.current_token())

    def __enter__(self) -> anyio.Event:
        _waiters.setdefault(self._slot, []).append(self._entry)
        return self._entry[0]

    def __exit__(self, *exc_info: object) -> None:
        entries = _waiters.get(self._slot, [])
        if self._entry in entries:
            entries.remove(self._entry)
        if not entries:
            _waiters.pop(self._slot, None)


def _wake(workflow_id: str, name: str) -> None:
    try:
        token: object = anyio.lowlevel.current_token()
    except RuntimeError:  # pragma: no cover - always called from async code
        return
    for event, owner in list(_waiters.get((workflow_id, name), ())):
        if owner == token:  # other loops see the signal at their next poll
            event.set()
