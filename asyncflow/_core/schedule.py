"""Cron scheduling on the caller's event loop: ``await flow.schedule(cron=...)``.

Each cron tick starts a run of the flow. The template flow is never run
itself: every run is a fresh ``AsyncFlow`` with the template's config and
tasks (one ``AsyncFlow`` object cannot run twice at once, and a fresh
object cannot inherit a previous run's state). Overlap policies:

* ``skip``: a tick that comes while a run is active is dropped.
* ``queue``: such a tick waits for the active run; at most one waits (a
  further tick while one is queued is dropped).
* ``parallel``: each tick starts its own run at once, up to
  ``max_parallel`` at a time (a tick beyond that is dropped), each under
  its own workflow id ``{workflow_id}.{YYYYmmddTHHMM}Z`` (the tick in UTC;
  seconds are added for a cron with a seconds field).

``skip`` and ``queue`` run under the template's workflow id. With
``resume=True`` a tick first reads the workflow's ``run.json``: when the
previous run did not complete (``failed``, ``cancelled``, ``waiting``,
``reset``, or ``running`` left by a crash) the tick resumes it; otherwise
the run starts over. A ``waiting`` (parked) run is resumed even with
``resume=False``: its armed waits and signals are never wiped by a fresh
start.

Stopping: cancelling ``schedule()`` (or ``Scheduler.stop()``) stops the
ticks at once and drops a queued tick. In-flight runs get ``grace`` seconds
(default 0: they are cancelled at once; ``None``: wait for them) to finish;
a cancelled run keeps every committed checkpoint and its next tick resumes
it. No thread is ever started: runs are tasks in one task group.

Time comes from a ``Clock`` (``now()`` and ``sleep_until()``): ``WallClock``
by default, ``ManualClock`` in tests. Cron expressions are read in
``tz`` (UTC by default). A tick that is late (the machine slept, a run
blocked the loop) fires once; the ticks missed meanwhile are not replayed.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Literal

import anyio

from asyncflow._core.clock import Clock, ManualClock, WallClock
from asyncflow._core.cron import check_cron, cron_next, is_stamped, tick_stamp
from asyncflow._core.modes import MODES
from asyncflow._core.ticks import ScheduledRun, Tick
from asyncflow._kernel.errors import ConfigurationError, WorkflowLocked
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest

if TYPE_CHECKING:
    from asyncflow._core.flow import AsyncFlow

__all__ = [
    "Clock",
    "ManualClock",
    "Overlap",
    "ScheduledRun",
    "Scheduler",
    "Tick",
    "WallClock",
    "clone_flow",
]

logger = logging.getLogger("asyncflow")

Overlap = Literal["skip", "queue", "parallel"]
_OVERLAPS = ("skip", "queue", "parallel")
#: a run whose manifest says this did not complete: ``resume=True`` resumes it
_UNFINISHED = ("failed", "cancelled", "running", "waiting", "reset")
_UTC = dt.timezone.utc


def clone_flow(flow: AsyncFlow, workflow_id: str) -> AsyncFlow:
    """``flow.copy(workflow_id)``: kept for code written before ``AsyncFlow.copy``."""
    return flow.copy(workflow_id)


class Scheduler:
    """Runs ``flow`` at every tick of ``cron`` until cancelled or ``stop()``-ped.

    See the module docstring for the overlap policies, resume and stopping.
    ``around_run(run_flow)``, if given, is an async context manager entered
    around each run, before it starts (e.g. ``asyncflow.otel.instrument``);
    ``on_tick(tick)``, if given, is called (synchronously) with each ``Tick``.
    ``ticks`` and ``runs`` keep the latest ``history`` entries.
    """

    def __init__(
        self,
        flow: AsyncFlow,
        cron: str,
        *,
        overlap: Overlap = "skip",
        resume: bool = True,
        max_parallel: int = 4,
        clock: Clock | None = None,
        tz: dt.tzinfo | None = None,
        grace: float | None = 0.0,
        mode: str = "sequential",
        keep_going: bool = False,
        max_concurrency: int | None = None,
        on_input_change: Literal["reuse", "reset", "raise"] = "reuse",
        on_success: Callable[..., Any] | None = None,
        on_failure: Callable[..., Any] | None = None,
        around_run: Callable[[AsyncFlow], AbstractAsyncContextManager[Any]] | None = None,
        on_tick: Callable[[Tick], object] | None = None,
        history: int = 100,
    ) -> None:
        check_cron(cron)
        if overlap not in _OVERLAPS:
            raise ConfigurationError(
                f"overlap must be one of {', '.join(_OVERLAPS)}, got {overlap!r}"
            )
        if type(max_parallel) is not int or max_parallel < 1:
            raise ConfigurationError(f"max_parallel must be an int >= 1, got {max_parallel!r}")
        if mode not in MODES or mode == "background":
            choices = ", ".join(m for m in MODES if m != "background")
            raise ConfigurationError(f"a scheduled run's mode must be one of {choices}: {mode!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigurationError(f"clock needs now() and sleep_until(), got {clock!r}")
        if grace is not None and (
            isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0
        ):
            raise ConfigurationError(f"grace must be seconds >= 0 or None, got {grace!r}")
        if on_input_change not in ("reuse", "reset", "raise"):
            raise ConfigurationError(
                f"on_input_change must be reuse, reset or raise, got {on_input_change!r}"
            )
        for name, hook in (("around_run", around_run), ("on_tick", on_tick)):
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"{name} must be callable, got {hook!r}")
        self.flow = flow
        self.cron = cron
        self.overlap = overlap
        self.resume = bool(resume)
        self.max_parallel = max_parallel
        self.clock: Clock = clock if clock is not None else WallClock()
        self.tz = tz if tz is not None else _UTC
        self.grace = grace
        self.around_run = around_run
        self.on_tick = on_tick
        self._start_options: dict[str, Any] = {
            "mode": mode,
            "keep_going": keep_going,
            "max_concurrency": max_concurrency,
            "on_input_change": on_input_change,
            "on_success": on_success,
            "on_failure": on_failure,
        }
        self._seconds = len(cron.split()) > 5
        if overlap == "parallel":  # the longest derived id must be valid
            self.run_id(dt.datetime(2000, 1, 1, tzinfo=_UTC))
        self.ticks: collections.deque[Tick] = collections.deque(maxlen=history)
        self.runs: collections.deque[ScheduledRun] = collections.deque(maxlen=history)
        self._active: list[ScheduledRun] = []
        self._pending: dt.datetime | None = None
        self._stop_requested = anyio.Event()
        self._idle = anyio.Event()
        self._cancelling = False
        self._loop_scope: anyio.CancelScope | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._stopping = False
        self._running = False
        self._fatal: BaseException | None = None

    # ------------------------------------------------------------ public

    @property
    def active(self) -> list[ScheduledRun]:
        """The runs going on now."""
        return list(self._active)

    @property
    def pending(self) -> dt.datetime | None:
        """The tick waiting for the active run (``overlap="queue"``), if any."""
        return self._pending

    def run_id(self, tick: dt.datetime) -> str:
        """The workflow id of the run for ``tick``."""
        base = self.flow.workflow_id
        if self.overlap != "parallel":
            return base
        stamp = tick_stamp(tick, self._seconds)
        return validate_id(f"{base}.{stamp}", "scheduled workflow id")

    def owns(self, workflow_id: str) -> bool:
        """Whether ``workflow_id`` is one this schedule makes: its id, or ``{id}.{tick stamp}``.

        Exact, so retention for ``nightly`` never touches ``nightly.v2`` nor
        ``nightly.20260101T0000Z.bak``.
        """
        return is_stamped(workflow_id, self.flow.workflow_id)

    def next_tick(self, after: dt.datetime | None = None) -> dt.datetime:
        """The first tick strictly after ``after`` (default: now)."""
        moment = after if after is not None else self.clock.now()
        return cron_next(self.cron, moment.astimezone(self.tz))

    async def run(self) -> None:
        """Tick until cancelled (raises the cancellation) or ``stop()`` (returns)."""
        if self._running:
            raise ConfigurationError("this scheduler is already running")
        self._running = True
        self._stopping = self._cancelling = False
        self._stop_requested = anyio.Event()
        self._fatal = None
        try:
            async with anyio.create_task_group() as group:
                self._task_group = group
                group.start_soon(self._stopper)
                with anyio.CancelScope() as scope:
                    self._loop_scope = scope
                    try:
                        await self._loop()
                    finally:
                        self._shutdown()
        finally:
            self._running = False
            self._task_group = None
            self._loop_scope = None
        if self._fatal is not None:
            raise self._fatal

    def stop(self) -> None:
        """Stop ticking; in-flight runs get ``grace`` seconds, then ``run()`` returns."""
        self._stopping = True
        if self._loop_scope is not None:
            self._loop_scope.cancel()

    def cancel_runs(self) -> None:
        """Cancel every in-flight run now: each ends ``cancelled``, its checkpoints stay."""
        self._cancelling = True
        for run in self._active:
            if run.flow is not None:
                run.flow.cancel()

    # ------------------------------------------------------------ internals

    async def _loop(self) -> None:
        fire = self.next_tick()
        logger.info("%s: scheduled %r, first tick %s", self.flow.workflow_id, self.cron, fire)
        while True:
            await self.clock.sleep_until(fire)
            self._tick(fire)
            now = self.clock.now()
            following = self.next_tick(fire)
            if following <= now:
                upcoming = self.next_tick(now)
                logger.warning(
                    "%s: tick %s was late (now %s); ticks before %s are not replayed",
                    self.flow.workflow_id,
                    fire,
                    now,
                    upcoming,
                )
                following = upcoming
            fire = following

    def _record(self, tick: Tick) -> None:
        self.ticks.append(tick)
        if self.on_tick is not None:
            self.on_tick(tick)
        if tick.action == "skip":
            logger.info("%s: tick %s skipped: %s", self.flow.workflow_id, tick.at, tick.reason)

    def _tick(self, at: dt.datetime) -> None:
        assert self._task_group is not None
        workflow_id = self.run_id(at)
        if self.overlap == "parallel":
            if any(run.workflow_id == workflow_id for run in self._active):
                self._record(Tick(at, "skip", workflow_id, "its run is still going on"))
                return
            if len(self._active) >= self.max_parallel:
                reason = f"{len(self._active)} runs are active (max_parallel)"
                self._record(Tick(at, "skip", workflow_id, reason))
                return
        elif self._active:
            if self.overlap == "skip":
                self._record(Tick(at, "skip", workflow_id, "a run is active"))
                return
            if self._pending is not None:
                self._record(Tick(at, "skip", workflow_id, "a tick is already queued"))
                return
            self._pending = at
            self._record(Tick(at, "queue", workflow_id))
            return
        self._record(Tick(at, "run", workflow_id))
        run = ScheduledRun(tick=at, workflow_id=workflow_id)
        self._active.append(run)
        self.runs.append(run)
        self._task_group.start_soon(self._run_chain, run, name=f"asyncflow run {workflow_id}")

    def _shutdown(self) -> None:
        self._stopping = True
        if self._pending is not None:
            logger.info(
                "%s: stopping; the queued tick %s is dropped", self.flow.workflow_id, self._pending
            )
            self._pending = None
        self._stop_requested.set()
        if self.grace == 0:
            self.cancel_runs()
        if self._active:
            logger.info(
                "%s: stopping; %d run(s) in flight (grace %s)",
                self.flow.workflow_id,
                len(self._active),
                "unlimited" if self.grace is None else f"{self.grace}s",
            )

    async def _stopper(self) -> None:
        """Once stopping, give the in-flight runs ``grace`` seconds, then cancel them.

        Shielded from the start: the cancellation that stops the scheduler
        must not stop the countdown.
        """
        with anyio.CancelScope(shield=True):
            await self._stop_requested.wait()
            if self.grace is None:
                return
            with anyio.move_on_after(self.grace):
                while self._active:
                    self._idle = anyio.Event()
                    await self._idle.wait()
            self.cancel_runs()

    async def _run_chain(self, run: ScheduledRun) -> None:
        """Run ``run``, then (``queue``) the tick that waited for it, and so on."""
        current: ScheduledRun | None = run
        while current is not None:
            # Shielded: stopping the scheduler stops its runs only through
            # cancel_runs() (flow.cancel()), so each run ends cleanly "cancelled".
            with anyio.CancelScope(shield=True):
                try:
                    await self._execute(current)
                finally:
                    self._active.remove(current)
                    self._idle.set()
            logger.info("%s: run of tick %s %s", current.workflow_id, current.tick, current.status)
            await self._apply_retention()
            current = None
            if self._pending is not None and not self._stopping:
                at, self._pending = self._pending, None
                current = ScheduledRun(tick=at, workflow_id=self.run_id(at))
                self._active.append(current)
                self.runs.append(current)

    async def _apply_retention(self) -> None:
        """``Config(retention=...)``: delete this schedule's old finished workflows."""
        retention = self.flow.config.retention_seconds
        if retention is None:
            return
        from asyncflow._core.retention import prune_schedule

        await prune_schedule(self.flow.config.storage, retention, self.flow.workflow_id, self.owns)

    async def _latest_status(self, workflow_id: str) -> str | None:
        where = manifest_key(workflow_id)
        blob = await self.flow.config.storage.read(where)
        return None if blob is None else Manifest.decode(blob.data, where).status

    def _should_resume(self, status: str | None) -> bool:
        # a parked run is still in progress: resumed even with resume=False, never wiped
        return status == "waiting" or (self.resume and status in _UNFINISHED)

    async def _execute(self, run: ScheduledRun) -> None:
        try:
            status = await self._latest_status(run.workflow_id)
            if self.overlap == "parallel" and status == "completed":
                # this tick's own id: another scheduler (or this one, restarted) ran it
                run.status = "done"
                logger.info("%s: tick %s already ran to completion", run.workflow_id, run.tick)
                return
            run.resumed = self._should_resume(status)
            flow = self.flow.copy(run.workflow_id)
            run.flow = flow
            hook = self.around_run(flow) if self.around_run is not None else nullcontext()
            async with hook:
                if self._cancelling:
                    run.status = "cancelled"
                    return
                run.status = "running"
                if run.resumed:
                    logger.info("%s: resuming the unfinished run", run.workflow_id)
                await flow.start(resume=run.resumed, **self._start_options)
            run.status = flow.status
        except WorkflowLocked as exc:
            run.status = "locked"
            run.error = exc
            logger.warning("%s: tick %s not run: %s", run.workflow_id, run.tick, exc)
        except ConfigurationError as exc:
            # the same on every tick: stop the scheduler with it
            run.status = "error"
            run.error = exc
            self._fatal = exc
            self.stop()
        except Exception as exc:
            run.status = "error"
            run.error = exc
            logger.exception("%s: run of tick %s raised", run.workflow_id, run.tick)
