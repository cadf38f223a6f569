"""Durable waits: steps that wait for a time or a signal, across crashes and restarts.

The first time a run reaches a wait, what it waits for is *armed*: written to
``{wf}/waits/{key}.json`` with a conditional create (a wake time fixed at that
first arrival, a signal name, a timeout's deadline). Every later attempt,
in this process or another, reads that record instead of arming anew, so a
restart never pushes a sleep further out. Once due, the wait completes like
any step: its checkpoint holds the wake time (a sleep) or the signal's
payload, and from then on resume restores it as usual.

The arming lives in its own key rather than in the task record, so that a
task record keeps meaning "completed" for every reader (resume, status,
older asyncflow versions): the codec stays as it is, and a crash between
arming and completing leaves an armed wait and no checkpoint, which is
exactly what the next attempt needs. A fresh run (``resume=False``) and an
input-change reset delete the armed waits along with the checkpoints.

Not yet due, a wait either blocks in this process (``on_wait="block"``:
sleeping on the clock, polling storage for its signal every
``Config.signal_poll`` seconds and woken at once by a signal sent from this
process) or *parks* (``on_wait="park"``): the task ends ``WAITING``, its
chain stops, and the run ends ``"waiting"`` once nothing else can progress.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from asyncflow._core.action import Action
from asyncflow._core.signals import read_signal, waiter
from asyncflow._kernel.codec import dumps, loads
from asyncflow._kernel.errors import (
    CheckpointCorrupt,
    ConfigurationError,
    PreconditionFailed,
    TaskTimeout,
)
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.layout import (
    wait_key,
)
from asyncflow._kernel.moments import LATEST_TEXT, is_moment
from asyncflow._kernel.storage import Storage

if TYPE_CHECKING:
    from asyncflow._core.clock import Clock
    from asyncflow._core.runner import Runner
    from asyncflow._core.task import Task

__all__ = [
    "NotParked",
    "WaitAction",
    "WaitParked",
    "WaitSpec",
    "arm",
    "due_at",
    "run_wait",
    "signal",
    "sleep",
    "until",
]

_UTC = dt.timezone.utc
WaitKind = Literal["sleep", "signal"]


@dataclass(frozen=True, slots=True)
class WaitSpec:
    """What an armed wait waits for; times are UTC epoch seconds.

    ``due_at`` is when a worker must look at it again: the wake time of a
    sleep, the deadline of a signal with a timeout, ``None`` for a signal
    without one (only its arrival makes it due).
    """

    kind: WaitKind
    armed_at: float
    wake_at: float | None = None
    signal: str | None = None
    deadline: float | None = None
    #: The workflow whose signal this waits for, when not the run's own (a child flow's).
    workflow: str | None = None

    @property
    def due_at(self) -> float | None:
        return self.wake_at if self.kind == "sleep" else self.deadline

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "kind": self.kind,
            "armed_at": self.armed_at,
            "wake_at": self.wake_at,
            "signal": self.signal,
            "deadline": self.deadline,
        }
        if self.workflow is not None:
            raw["workflow"] = self.workflow
        return raw

    @classmethod
    def from_json(cls, raw: Any, where: str) -> WaitSpec:
        try:
            if not isinstance(raw, dict) or raw.get("kind") not in ("sleep", "signal"):
                raise ValueError("not a wait")
            kind: WaitKind = raw["kind"]
            spec = cls(
                kind=kind,
                armed_at=_number(raw.get("armed_at"), "armed_at"),
                wake_at=_optional_number(raw.get("wake_at"), "wake_at"),
                signal=raw.get("signal"),
                deadline=_optional_number(raw.get("deadline"), "deadline"),
                workflow=raw.get("workflow"),
            )
            if kind == "sleep" and spec.wake_at is None:
                raise ValueError("a sleep without 'wake_at'")
            if kind == "signal":
                validate_id(spec.signal, "signal name")
            if spec.workflow is not None:
                validate_id(spec.workflow, "workflow")
        except (ValueError, TypeError) as exc:  # ConfigurationError is a ValueError
            raise CheckpointCorrupt(f"{where} is not a valid wait: {exc}", key=where) from exc
        return spec


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"field {name!r} is missing or not a finite number")
    if not is_moment(value):
        raise ValueError(f"field {name!r} is {value!r}, not a time before {LATEST_TEXT}")
    return float(value)


def _optional_number(value: Any, name: str) -> float | None:
    return None if value is None else _number(value, name)


def due_at(specs: Any) -> float | None:
    """The earliest time any of ``specs`` becomes due by the clock alone."""
    times = [spec.due_at for spec in specs if spec.due_at is not None]
    return min(times) if times else None


class NotParked(Exception):
    """A worker's resume found the run no longer waiting (another worker took it)."""

    def __init__(self, workflow_id: str, status: str | None) -> None:
        super().__init__(f"workflow {workflow_id} is {status or 'gone'}, not waiting")
        self.workflow_id = workflow_id
        self.status = status


class WaitParked(Exception):
    """Raised inside the runner when a wait is not due and the run parks.

    A child flow that parked raises it with the child's waits (``inner``,
    by the child's keys): the parent's step parks on all of them.
    """

    def __init__(self, spec: WaitSpec | None, *, inner: dict[str, WaitSpec] | None = None) -> None:
        super().__init__(spec.kind if spec is not None else "child flow")
        self.spec = spec
        self.inner = inner

    def entries(self, key: str) -> dict[str, WaitSpec]:
        """What ``run.json`` records of this park under task ``key``."""
        if self.inner is None:
            assert self.spec is not None
            return {key: self.spec}
        return {f"{key}/{inner}": spec for inner, spec in self.inner.items()}


async def _called_outside_a_flow(**_: Any) -> Any:
    raise ConfigurationError("a wait step only runs inside a flow: flow.task.add(step=wait...)")


class WaitAction(Action):
    """A wait as a step: ``wait.sleep``, ``wait.until`` or ``wait.signal``."""

    def __init__(
        self,
        kind: WaitKind,
        name: str,
        *,
        seconds: float | None = None,
        until: dt.datetime | None = None,
        signal: str | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(_called_outside_a_flow)
        self.name = name
        self.module = __name__
        self.kind: WaitKind = kind
        self.seconds = seconds
        self.until = until
        self.signal = signal
        self.wait_timeout = timeout

    def arming(self, now: float) -> WaitSpec:
        """What this wait waits for, were it armed at ``now``."""
        if self.kind == "signal":
            deadline = None if self.wait_timeout is None else now + self.wait_timeout
            _real(deadline, f"{self.name}: its deadline")
            return WaitSpec("signal", now, signal=self.signal, deadline=deadline)
        wake = self.until.timestamp() if self.until is not None else now + (self.seconds or 0.0)
        _real(wake, f"{self.name}: its wake time")
        return WaitSpec("sleep", now, wake_at=wake)

    def __repr__(self) -> str:
        return f"<wait {self.name}>"


#: The longest a wait may last: its wake time must be a date every reader can show.
MAX_WAIT = 100 * 365.25 * 86400.0
_MAX_WAIT_TEXT = f"100 years ({MAX_WAIT:,.0f} s)"


def _seconds(value: object, what: str) -> float:
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{what} must be seconds or a timedelta, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{what} must be finite and >= 0, got {value!r}")
    if value > MAX_WAIT:
        raise ConfigurationError(
            f"{what} is {value:,.0f} s, over the limit of {_MAX_WAIT_TEXT}:"
            " a wake time must be a real date"
        )
    return float(value)


def _real(moment: float | None, what: str) -> None:
    """Refuse a wake time or deadline past what a datetime holds (a clock set far ahead)."""
    if moment is not None and not is_moment(moment):
        raise ConfigurationError(f"{what} would be {moment!r}, past {LATEST_TEXT}")


def sleep(duration: float | dt.timedelta) -> WaitAction:
    """A step that waits ``duration`` (seconds or a timedelta) from the first time it is reached."""
    return WaitAction("sleep", "wait.sleep", seconds=_seconds(duration, "wait.sleep duration"))


def until(when: dt.datetime) -> WaitAction:
    """A step that waits until ``when`` (a timezone-aware datetime)."""
    if not isinstance(when, dt.datetime):
        raise ConfigurationError(f"wait.until needs a datetime, got {when!r}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ConfigurationError(
            f"wait.until needs a timezone-aware datetime, got naive {when!r}:"
            " add tzinfo=datetime.timezone.utc"
        )
    return WaitAction("sleep", "wait.until", until=when)


def signal(name: str, timeout: float | dt.timedelta | None = None) -> WaitAction:
    """A step that waits for the signal ``name``; it completes with the signal's payload.

    With ``timeout`` (from the first time the step is reached) the step fails
    with ``TaskTimeout`` if no signal came by then.
    """
    validate_id(name, "signal name")
    if timeout is None:
        limit = None
    else:
        try:
            limit = _seconds(timeout, "wait.signal timeout")
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (for no timeout, pass timeout=None)") from None
    return WaitAction("signal", f"wait.signal.{name}", signal=name, timeout=limit)


async def arm(
    storage: Storage, workflow_id: str, key: str, action: WaitAction, now: float
) -> WaitSpec:
    """The armed wait of ``key``: the stored one, else this one, stored by a conditional create."""
    where = wait_key(workflow_id, key)
    blob = await storage.read(where)
    if blob is None:
        spec = action.arming(now)
        record = {"asyncflow": 1, "kind": "wait", "workflow_id": workflow_id, "key": key}
        try:
            await storage.write(where, dumps({**record, "wait": spec.to_json()}), if_absent=True)
            return spec
        except PreconditionFailed:
            blob = await storage.read(where)
            if blob is None:
                raise
    try:
        raw = loads(blob.data)
    except ValueError as exc:
        raise CheckpointCorrupt(f"{where} is not valid JSON: {exc}", key=where) from exc
    if not isinstance(raw, dict) or raw.get("workflow_id") != workflow_id or raw.get("key") != key:
        raise CheckpointCorrupt(f"{where} is not the wait of {workflow_id} key {key}", key=where)
    spec = WaitSpec.from_json(raw.get("wait"), where)
    if spec.kind != action.kind or spec.signal != action.signal:
        # the step at this key changed (another signal, a sleep instead): arm it anew
        await storage.delete(where)
        return await arm(storage, workflow_id, key, action, now)
    return spec


def _limit(spec: WaitSpec) -> float:
    assert spec.deadline is not None
    return spec.deadline - spec.armed_at


def _clock(runner: Runner) -> Clock:
    clock = runner.config.clock
    if clock is None:
        from asyncflow._core.clock import WallClock

        return WallClock(recheck=30.0)
    return clock


async def run_wait(runner: Runner, task: Task, action: WaitAction) -> Any:
    """Complete the wait of ``task`` when due; park it (``WaitParked``) or block until then."""
    storage = runner.storage
    workflow_id = runner.workflow_id
    clock = _clock(runner)
    spec = await arm(storage, workflow_id, task.key, action, clock.now().timestamp())
    announced = False
    while True:
        now = clock.now().timestamp()
        if spec.kind == "sleep":
            assert spec.wake_at is not None
            if now >= spec.wake_at:
                return dt.datetime.fromtimestamp(spec.wake_at, _UTC)
        else:
            assert spec.signal is not None
            sent = await read_signal(storage, workflow_id, spec.signal)
            if sent is not None and (spec.deadline is None or sent.sent_at <= spec.deadline):
                return sent.payload
            if spec.deadline is not None and (now >= spec.deadline or sent is not None):
                late = ""
                if sent is not None:
                    late = f" (it came {sent.sent_at - spec.deadline:.3g}s after the deadline)"
                raise TaskTimeout(
                    f"step {action.name} (key {task.key}) timed out: no signal"
                    f" {spec.signal!r} within {_limit(spec):g}s{late}",
                    key=task.key,
                    step=action.name,
                )
        if not announced:
            announced = True
            runner.announce_wait(task, spec)
        if runner.on_wait == "park":
            raise WaitParked(spec)
        await _block(runner, clock, spec)


async def _block(runner: Runner, clock: Clock, spec: WaitSpec) -> None:
    """Return when the wait may have become due: its time came, a signal may have arrived."""
    if spec.kind == "sleep":
        assert spec.wake_at is not None
        await clock.sleep_until(dt.datetime.fromtimestamp(spec.wake_at, _UTC))
        return
    assert spec.signal is not None
    with waiter(runner.workflow_id, spec.signal) as event:
        async with anyio.create_task_group() as group:

            async def first(wait: Callable[[], Awaitable[Any]]) -> None:
                await wait()
                group.cancel_scope.cancel()

            group.start_soon(first, event.wait)
            group.start_soon(first, functools.partial(anyio.sleep, runner.config.signal_poll))
            if spec.deadline is not None:
                deadline = dt.datetime.fromtimestamp(spec.deadline, _UTC)
                group.start_soon(first, functools.partial(clock.sleep_until, deadline))
