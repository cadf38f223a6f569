"""What a run waits for, as storage tells it: ``run.json``, armed waits, signals.

A parked run's ``run.json`` names its waits (``waiting``); a run that is
blocked on a wait, or that crashed there, has only the wait's arming record
(``{wf}/waits/{key}.json``); a signal that arrived is
``{wf}/signals/{name}.json``. Each is read here for what a reader shows: a
wake time or deadline, and when a signal arrived, so that ``asyncflow
status`` and the viewer say ``signal NAME received at TIME; the next resume
consumes it`` instead of "waiting for signal". A time no date can hold (a
tampered record) is shown as invalid, never raised: one bad run must not
break a page or a listing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from asyncflow._kernel.capabilities import read_many
from asyncflow._kernel.codec import loads
from asyncflow._kernel.layout import signal_key, wait_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.moments import LATEST_TEXT, is_moment
from asyncflow._kernel.storage import Storage

__all__ = ["WaitState", "armed_waits", "due_problem", "wait_steps", "waits_of", "with_arrivals"]


@dataclass(frozen=True, slots=True)
class WaitState:
    """One wait of a run: a signal by name, a time, or both.

    ``due_at`` is the wake time of a sleep or the deadline of a signal wait
    (``None`` when invalid: ``problem`` says why). ``workflow`` is the
    workflow whose signal it waits for when not the run's own (a wait inside
    a child flow). ``received_at`` is when its signal arrived, not yet
    consumed: the next resume does (``late`` when it came after the deadline:
    the wait then times out). ``armed`` is true for a wait read from its
    arming record (a run blocked on it, or one that crashed there).
    """

    key: str | None
    kind: str | None
    signal: str | None
    due_at: float | None
    workflow: str | None = None
    received_at: float | None = None
    late: bool = False
    problem: str | None = None
    armed: bool = False

    @property
    def text(self) -> str:
        """The wait in one line, as ``asyncflow status`` prints it."""
        if self.received_at is not None:
            return f"signal {self.signal} received at {_when(self.received_at)}; " + (
                "it came after the deadline: the next resume times the wait out"
                if self.late
                else "the next resume consumes it"
            )
        if self.kind == "signal":
            where = f" (to workflow {self.workflow})" if self.workflow else ""
            until = f", times out at {_when(self.due_at)}" if self.due_at is not None else ""
            text = f"signal {self.signal!r}{where}{until}"
        else:
            text = f"its wake time {_when(self.due_at)}"
        return text if self.problem is None else f"{text} ({self.problem})"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "signal": self.signal,
            "due_at": self.due_at,
            "workflow": self.workflow,
            "received_at": self.received_at,
            "late": self.late,
            "problem": self.problem,
            "armed": self.armed,
        }


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _moment(value: Any, what: str) -> tuple[float | None, str | None]:
    """``(time, None)`` for a real date, ``(None, problem)`` for anything else but null."""
    if value is None:
        return None, None
    if is_moment(value):
        return float(value), None
    return None, f"invalid {what} {value!r}: not a date before {LATEST_TEXT}"


def due_problem(manifest: Manifest) -> tuple[float | None, str | None]:
    """``run.json``'s ``due_at``, or ``None`` and why it cannot be a time."""
    return _moment(manifest.due_at, "due time")


def _state(key: str, raw: Mapping[str, Any], *, armed: bool) -> WaitState:
    kind = raw.get("kind")
    signal = raw.get("signal")
    workflow = raw.get("workflow")
    field = "wake_at" if kind == "sleep" else "deadline"
    due, problem = _moment(raw.get(field), "wake time" if kind == "sleep" else "deadline")
    return WaitState(
        key=key,
        kind=kind if isinstance(kind, str) else None,
        signal=signal if isinstance(signal, str) else None,
        due_at=due,
        workflow=workflow if isinstance(workflow, str) else None,
        problem=problem,
        armed=armed,
    )


def waits_of(manifest: Manifest) -> tuple[WaitState, ...]:
    """What a parked run waits for, from ``run.json``."""
    return tuple(_state(key, spec, armed=False) for key, spec in manifest.waiting.items())


def wait_steps(manifest: Manifest, keys: Iterable[str]) -> list[str]:
    """Those of ``keys`` whose step is a durable wait (``wait.sleep``, ``wait.signal.NAME``...)."""
    steps = dict(zip(manifest.tasks, manifest.steps, strict=False))
    return [key for key in keys if steps.get(key, "").startswith("wait.")]


def _body(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        raw = loads(data)
    except ValueError:
        return None
    return raw if isinstance(raw, dict) else None


async def armed_waits(
    storage: Storage, workflow_id: str, keys: Iterable[str]
) -> tuple[WaitState, ...]:
    """The armed waits of ``keys`` (one read each); a key not armed yet is left out."""
    keys = list(keys)
    if not keys:
        return ()
    blobs = await read_many(storage, [wait_key(workflow_id, key) for key in keys])
    found = []
    for key, blob in zip(keys, blobs, strict=True):
        raw = _body(blob.data if blob is not None else None)
        if raw is None or raw.get("workflow_id") != workflow_id or raw.get("key") != key:
            continue
        spec = raw.get("wait")
        if isinstance(spec, dict):
            found.append(_state(key, spec, armed=True))
    return tuple(found)


async def with_arrivals(
    storage: Storage, workflow_id: str, waits: tuple[WaitState, ...]
) -> tuple[WaitState, ...]:
    """``waits`` with when each one's signal arrived (one read per signal wait)."""
    asked = [(i, w) for i, w in enumerate(waits) if w.kind == "signal" and w.signal is not None]
    if not asked:
        return waits
    wheres = [signal_key(w.workflow or workflow_id, w.signal or "") for _, w in asked]
    blobs = await read_many(storage, wheres)
    found = list(waits)
    for (index, wait), blob in zip(asked, blobs, strict=True):
        raw = _body(blob.data if blob is not None else None)
        if raw is None or raw.get("kind") != "signal":
            continue
        sent, problem = _moment(raw.get("sent_at"), "signal time")
        if sent is None:
            found[index] = replace(wait, problem=problem or wait.problem)
            continue
        late = wait.due_at is not None and sent > wait.due_at
        found[index] = replace(wait, received_at=sent, late=late)
    return tuple(found)
