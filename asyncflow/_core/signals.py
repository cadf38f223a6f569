"""Signals: a named, one-shot message to a workflow, stored at ``{wf}/signals/{name}.json``.

A signal is written with a conditional create, so of two senders of one name
exactly one wins and the other gets ``PreconditionFailed``: the waiting step
sees one payload, ever. A run blocked on a signal in this process is woken at
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

from asyncflow._kernel.codec import dumps, loads
from asyncflow._kernel.errors import CheckpointCorrupt, PreconditionFailed, SerializationError
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.layout import signal_key, signal_prefix
from asyncflow._kernel.serializers import JSONSerializer
from asyncflow._kernel.storage import Storage

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


def _encode(workflow_id: str, name: str, payload: Any) -> bytes:
    try:
        body = dumps(_JSON.encode(payload))
    except (SerializationError, TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"signal {name!r} to workflow {workflow_id}: the payload cannot be stored as JSON"
            f" ({type(payload).__qualname__}): {exc}"
        ) from None
    head = dumps(
        {
            "asyncflow": 1,
            "kind": "signal",
            "workflow_id": workflow_id,
            "name": name,
            "sent_at": time.time(),
        }
    )
    return head[:-1] + b',"payload":' + body + b"}"


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


async def send_signal(
    storage: Storage, workflow_id: str, name: str, payload: Any = None
) -> SignalRecord:
    """Store a signal once; a second send of the same name raises ``PreconditionFailed``."""
    validate_id(workflow_id, "workflow_id")
    validate_id(name, "signal name")
    data = _encode(workflow_id, name, payload)
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
