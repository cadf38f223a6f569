"""``Worker``: resumes the parked runs of one flow when they are due.

A scan is one listing of the workflows (the top-level folders, through
``list_children``: never the task records) and one read of each
``run.json``. A run is the worker's when its ``run.json`` says
``waiting``, its id starts with the worker's ``prefix``, and the flow built
for it has the keys the run recorded (``run.json``'s ``tasks``): two flows
with other steps never resume each other's runs. It is *due* when one of
its waits is: a wake time or a signal's deadline has passed on the worker's
clock, or its signal was sent (one listing of ``{wf}/signals/`` per
candidate that waits for a signal).

Each due run is resumed as ``start(resume=True, on_wait="park")`` under the
workflow's lease, at most ``concurrency`` at once. Of several workers that
see one run due, the lease lets one in; the others get ``WorkflowLocked``,
or (if the first already finished) find under the lease that the run is no
longer waiting, and skip it: a run is never resumed twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from asyncflow._core.flow import AsyncFlow
from asyncflow._core.signals import signal_names
from asyncflow._core.waits import NotParked, WaitSpec
from asyncflow._kernel.capabilities import list_children, read_many
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.errors import (
    CheckpointCorrupt,
    ConfigurationError,
    StorageError,
    WorkflowLocked,
)
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.moments import is_moment
from asyncflow._kernel.storage import Blob, Storage

if TYPE_CHECKING:
    from asyncflow._core.clock import Clock

__all__ = ["Parked", "Worker", "list_workflows"]

logger = logging.getLogger("asyncflow")

FlowSource = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Parked:
    """A parked run as its ``run.json`` describes it."""

    workflow_id: str
    mode: str
    tasks: tuple[str, ...]
    waiting: dict[str, WaitSpec]
    due_at: float | None


async def list_workflows(storage: Storage, prefix: str = "") -> AsyncIterator[str]:
    """The workflow ids under ``prefix``, in order.

    The folders of ``list_children(storage, "")``: a directory scan, an
    S3/GCS listing with a delimiter on every bundled backend, whose cost
    grows with the number of workflows only; a storage without
    ``list_children`` gets the wrapper's fallback (a full ``list``).
    """
    async for segment in list_children(storage, ""):
        if segment.endswith("/") and segment[:-1].startswith(prefix):
            yield segment[:-1]


class Worker:
    """Resume the parked runs of ``flow`` when they are due; see the module docstring.

    ``flow`` is an ``AsyncFlow`` (each run is a copy of it under the run's
    id) or a function ``make(workflow_id)`` (sync or async) returning the
    run's ``AsyncFlow``, so that per-run inputs can be rebuilt from the id.
    ``storage`` defaults to the flow's; ``clock`` (default: the wall clock)
    decides what is due and is given to the resumed runs' waits.
    """

    def __init__(
        self,
        flow: AsyncFlow | FlowSource,
        *,
        storage: Storage | None = None,
        prefix: str = "",
        concurrency: int = 4,
        poll_interval: float = 5.0,
        clock: Clock | None = None,
        scan_concurrency: int = 32,
    ) -> None:
        if isinstance(flow, AsyncFlow):
            self._template: AsyncFlow | None = flow
            self._factory: FlowSource | None = None
            storage = storage if storage is not None else flow.config.storage
        elif callable(flow):
            self._template, self._factory = None, flow
        else:
            raise ConfigurationError(f"Worker needs an AsyncFlow or a function, got {flow!r}")
        if storage is None:
            raise ConfigurationError("Worker(make_flow, ...) needs storage=")
        if type(concurrency) is not int or concurrency < 1:
            raise ConfigurationError(f"Worker concurrency must be an int >= 1, got {concurrency!r}")
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, (int, float))
            or not math.isfinite(poll_interval)
            or poll_interval <= 0
        ):
            raise ConfigurationError(
                f"Worker poll_interval must be seconds > 0, got {poll_interval!r}"
            )
        if not isinstance(prefix, str):
            raise ConfigurationError(f"Worker prefix must be a str, got {prefix!r}")
        if clock is None:
            from asyncflow._core.clock import WallClock

            clock = WallClock(recheck=poll_interval)
        self.storage = storage
        self.prefix = prefix
        self.concurrency = concurrency
        self.poll_interval = float(poll_interval)
        self.clock = clock
        self.scan_concurrency = scan_concurrency
        self.resumed: list[str] = []
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._in_flight: dict[str, AsyncFlow | None] = {}
        self._next_due: float | None = None
        self._stopping = anyio.Event()
        self._foreign: set[str] = set()

    # -- scanning -----------------------------------------------------------

    async def scan(self) -> list[Parked]:
        """Every parked run under ``prefix``: one listing and one read per workflow."""
        ids = [wid async for wid in list_workflows(self.storage, self.prefix)]
        blobs = await read_many(
            self.storage, [manifest_key(wid) for wid in ids], concurrency=self.scan_concurrency
        )
        found: dict[str, Parked] = {}
        for workflow_id, blob in zip(ids, blobs, strict=True):
            parked = self._parse(workflow_id, blob)
            if parked is not None:
                found[workflow_id] = parked
        return [found[wid] for wid in sorted(found)]

    def _parse(self, workflow_id: str, blob: Blob | None) -> Parked | None:
        if blob is None or b'"waiting"' not in blob.data:
            return None  # most runs in a store are not parked: no decoding for them
        where = manifest_key(workflow_id)
        try:
            manifest = Manifest.decode(blob.data, where)
            if manifest.status != "waiting":
                return None
            waiting = {
                key: WaitSpec.from_json(raw, f"{where} waiting[{key}]")
                for key, raw in manifest.waiting.items()
            }
            if manifest.due_at is not None and not is_moment(manifest.due_at):
                raise CheckpointCorrupt(
                    f"{where} due_at {manifest.due_at!r} is not a real date", key=where
                )
        except CheckpointCorrupt as exc:
            logger.warning("%s: skipped by the worker: %s", workflow_id, exc)
            return None
        return Parked(workflow_id, manifest.mode, manifest.tasks, waiting, manifest.due_at)

    async def is_due(self, parked: Parked) -> bool:
        """Whether a wait of ``parked`` can complete (or time out) now."""
        now = self.clock.now().timestamp()
        if parked.due_at is not None and parked.due_at <= now:
            return True
        wanted: dict[str, set[str | None]] = {}  # a child flow's waits name its workflow
        for spec in parked.waiting.values():
            if spec.kind == "signal":
                wanted.setdefault(spec.workflow or parked.workflow_id, set()).add(spec.signal)
        for workflow_id, names in wanted.items():
            if names & await signal_names(self.storage, workflow_id):
                return True
        return False

    async def due(self) -> list[Parked]:
        """The parked runs that are due now, not already being resumed here."""
        runs = [p for p in await self.scan() if p.workflow_id not in self._in_flight]
        self._next_due = min((p.due_at for p in runs if p.due_at is not None), default=None)
        flags = [False] * len(runs)
        pending = iter(enumerate(runs))

        async def checker() -> None:
            for index, parked in pending:
                flags[index] = await self.is_due(parked)

        if runs:
            await run_all([checker] * min(self.scan_concurrency, len(runs)))
        return [parked for parked, flag in zip(runs, flags, strict=True) if flag]

    # -- resuming -----------------------------------------------------------

    async def _build(self, parked: Parked) -> AsyncFlow | None:
        if self._template is not None:
            flow = self._template.copy(parked.workflow_id)
        else:
            assert self._factory is not None
            made = self._factory(parked.workflow_id)
            if inspect.isawaitable(made):
                made = await made
            if not isinstance(made, AsyncFlow) or made.workflow_id != parked.workflow_id:
                raise ConfigurationError(
                    f"the worker's flow function returned {made!r} for workflow"
                    f" {parked.workflow_id}: it must return an AsyncFlow with that workflow_id"
                )
            flow = made
        keys = tuple(task.key for task in flow.task.queue)
        if keys != parked.tasks:
            if parked.workflow_id not in self._foreign:
                self._foreign.add(parked.workflow_id)
                logger.info(
                    "%s: parked, but not a run of this worker's flow (its keys differ); skipped",
                    parked.workflow_id,
                )
            return None
        flow.config = dataclasses.replace(flow.config, storage=self.storage, clock=self.clock)
        return flow

    async def resume(self, parked: Parked) -> bool:
        """Resume one parked run (waiting for a free slot); true if this worker ran it."""
        flow = await self._build(parked)
        if flow is None:
            return False
        mode = "sequential" if parked.mode == "background" else parked.mode
        async with self._limiter:
            if self._stopping.is_set():
                return False
            self._in_flight[parked.workflow_id] = flow
            try:
                await flow._resume_parked(mode)
            except WorkflowLocked:
                logger.info("%s: being run by another runner; skipped", parked.workflow_id)
                return False
            except NotParked as exc:
                logger.info("%s: skipped: %s", parked.workflow_id, exc)
                return False
            finally:
                self._in_flight.pop(parked.workflow_id, None)
        self.resumed.append(parked.workflow_id)
        logger.info("%s: resumed by the worker: %s", parked.workflow_id, flow.status)
        return True

    async def run_once(self) -> list[str]:
        """One scan, then resume every due run (``concurrency`` at once); the ids resumed."""
        done: list[str] = []

        async def one(parked: Parked) -> None:
            if await self._resume_logged(parked):
                done.append(parked.workflow_id)

        runs = await self.due()
        if runs:
            await run_all([functools.partial(one, parked) for parked in runs])
        return sorted(done)

    async def _resume_logged(self, parked: Parked) -> bool:
        try:
            return await self.resume(parked)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            # one broken run (a step's storage error, a bad factory) must not stop the others
            logger.exception("%s: the worker's resume failed", parked.workflow_id)
            return False

    async def run(self) -> None:
        """Scan and resume until ``stop()`` (in-flight runs finish) or cancellation."""
        async with anyio.create_task_group() as group:
            while not self._stopping.is_set():
                try:
                    runs = await self.due()
                except StorageError as exc:
                    # a storage outage must not end a long-running worker: next scan
                    logger.warning(
                        "worker scan failed (%s); retrying in %gs", exc, self.poll_interval
                    )
                    runs = []
                for parked in runs:
                    self._in_flight.setdefault(parked.workflow_id, None)
                    group.start_soon(self._start, parked)
                await self._pause()

    async def _start(self, parked: Parked) -> None:
        try:
            await self._resume_logged(parked)
        finally:
            self._in_flight.pop(parked.workflow_id, None)

    async def _pause(self) -> None:
        """Until the next scan: ``poll_interval``, or sooner if a parked run's time comes."""
        async with anyio.create_task_group() as group:

            async def first(wait: Callable[[], Awaitable[Any]]) -> None:
                await wait()
                group.cancel_scope.cancel()

            group.start_soon(first, self._stopping.wait)
            group.start_soon(first, functools.partial(anyio.sleep, self.poll_interval))
            if self._next_due is not None:
                when = dt.datetime.fromtimestamp(self._next_due, dt.timezone.utc)
                group.start_soon(first, functools.partial(self.clock.sleep_until, when))

    def stop(self) -> None:
        """Start no more runs; ``run()`` returns once the in-flight ones have finished."""
        self._stopping.set()

    def cancel(self) -> None:
        """Stop and cancel the in-flight runs (their waits stay armed; a resume continues them)."""
        self._stopping.set()
        for flow in list(self._in_flight.values()):
            if flow is not None:
                flow.cancel()
