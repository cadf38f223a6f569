"""The viewer's two actions, each a call to the library function that does it.

The viewer adds no behaviour of its own: approving a waiting run is
``asyncflow.signal``, resetting from a task is ``asyncflow.reset``.
"""

from __future__ import annotations

import json
from typing import Any

from asyncflow import (
    ConfigurationError,
    PreconditionFailed,
    SerializationError,
    WorkflowLocked,
    reset,
    signal,
)
from asyncflow.providers import Storage
from asyncflow.ui._guard import Refused

__all__ = ["parse_payload", "reset_from", "send_signal"]

MAX_PAYLOAD_CHARS = 32 * 1024


def parse_payload(text: str) -> Any:
    """A signal's payload: JSON text, or nothing (``None``)."""
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_PAYLOAD_CHARS:
        raise Refused(413, "Payload too large", f"a payload is limited to {MAX_PAYLOAD_CHARS}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Refused(400, "Bad payload", f"the payload is not valid JSON: {exc}") from None


async def send_signal(storage: Storage, workflow_id: str, name: str, payload: Any) -> None:
    """``asyncflow.signal``: delivered once; a second send of one name, a signal to a
    completed run or a payload too large is refused (409)."""
    try:
        await signal(storage, workflow_id, name, payload)
    except PreconditionFailed:
        raise Refused(
            409, "Signal already sent", f"signal {name} was already sent to {workflow_id}"
        ) from None
    except (ConfigurationError, SerializationError) as exc:  # a completed run, a payload too big
        raise Refused(409, "Signal refused", str(exc)) from None


async def reset_from(storage: Storage, workflow_id: str, key: str) -> list[str]:
    """``asyncflow.reset``: the keys whose checkpoints went; refused while a runner is live."""
    try:
        return await reset(storage, workflow_id, key)
    except WorkflowLocked as exc:
        raise Refused(409, "Workflow is running", str(exc)) from None
