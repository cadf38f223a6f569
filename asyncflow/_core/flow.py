"""``AsyncFlow``: a list of steps, run on the caller's event loop, checkpointed."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from asyncflow import events
from asyncflow._core.background import Detached
from asyncflow._core.blobs import collect_garbage
from asyncflow._core.bus import EventBus, EventStream
from asyncflow._core.checkpoint import CheckpointRecord
from asyncflow._core.concurrency import run_all, run_beside
from asyncflow._core.config import Config
from asyncflow._core.context import Context
from asyncflow._core.errors import (
    CheckpointMismatch,
    ConfigurationError,
    InputChangedError,
    LeaseLost,
    SerializationError,
    TaskFailed,
    TaskTimeout,
)
from asyncflow._core.graph import check_graph
from asyncflow._core.ids import validate_id
from asyncflow._core.layout import manifest_key, task_prefix
from asyncflow._core.lease import Lease
from asyncflow._core.manifest import Manifest, fingerprint_of
from asyncflow._core.modes import MODES
from asyncflow._core.records import clear_for_new_run, load_records
from asyncflow._core.runner import CODE_CHANGE_POLICIES, Runner, call_callback
from asyncflow._core.runs import RunRecorder, invalidate, report_unhandled
from asyncflow._core.shape import close_matches
from asyncflow._core.storage import Storage
from asyncflow._core.subflow import PARENT, Parent
from asyncflow._core.summary import new_run_id
from asyncflow._core.task import Task, TaskBuilder, TaskStatus
from asyncflow._core.waits import NotParked, due_at

__all__ = ["AsyncFlow", "Mode"]

logger = logging.getLogger("asyncflow")

Mode = Literal["sequential", "sequential_group", "background", "parallel", "graph"]
_POLICIES = ("reuse", "reset", "raise")
_ON_WAIT = ("block", "park")


@dataclass(frozen=True, slots=True)
class _RunOptions:
    mode: str
    resume: bool
    keep_going: bool
    on_success: Callable[..., Any] | None
    on_failure: Callable[..., Any] | None
    on_input_change: str
    fingerprint: str | None
    max_concurrency: int | None
    raise_on_failure: bool
    wait_for_lease: bool | float
    on_wait: str = "block"
    only_if_waiting: bool = False  # a worker's resume: do nothing unless run.json says waiting
    rerun_from: str | None = None
    on_code_change: str = "reuse"


async def _with_heartbeat(lease: Lease, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` while the lease is renewed; raise ``LeaseLost`` if it is lost.

    Losing the lease cancels the body at once; the checkpoint about to be
    committed is refused by ``Lease.ensure`` in any case.
    """
    with contextlib.suppress(LeaseLost):  # raised by ensure() below, once the heartbeat stopped
        await run_beside(body, lease.heartbeat)
    lease.ensure()


async def _refuse_positional(storage: Storage, previous: Manifest, tasks: list[Task]) -> None:
    """Never restore a record written under a positional key into another step.

    asyncflow before name-derived keys named checkpoints ``0``, ``1``... by
    position. Such a workflow resumed under the new keys would silently run
    everything again next to stale records, or (with a hand-pinned ``key``)
    mix them up: refuse, saying how to proceed.
    """
    old = previous.tasks
    if previous.keys or not old or old != tuple(str(i) for i in range(len(old))):
        return
    if [task.key for task in tasks] == list(old):
        return  # the keys were pinned to the old positions: the records match them
    prefix = task_prefix(previous.workflow_id)
    stale = {f"{prefix}{key}.json" for key in old}
    if not [name async for name in storage.list(prefix) if name in stale]:
        return  # nothing was checkpointed under the old keys
    raise CheckpointMismatch(
        f"workflow {previous.workflow_id} was checkpointed by an earlier asyncflow with"
        f" positional keys '0'..'{len(old) - 1}'; this version keys each step by its name,"
        " so those checkpoints cannot be matched to steps safely. Either start over"
        f" (asyncflow clear {previous.workflow_id}, or start(resume=False)), or pin the"
        " old keys with task.add(..., key='0'), key='1', ... in the old order"
    )


def _with_children(manifest: Manifest, tasks: list[Task]) -> Manifest:
    """The manifest with each map's recorded expansion (its number of children)."""
    children = {t.key: t.children for t in tasks if t.children is not None}
    return dataclasses.replace(manifest, children=children) if children else manifest


class AsyncFlow:
    """A workflow: add steps with ``flow.task.add``, run them with ``await flow.start()``.

    ``workflow_id`` names the checkpoints; without one a random id is used and
    the run cannot be resumed by another process.
    """

    def __init__(self, config: Config | None = None, workflow_id: str | None = None) -> None:
        if config is not None and not isinstance(config, Config):
            raise ConfigurationError(f"config must be an asyncflow Config, got {config!r}")
        self.config = config if config is not None else Config()
        self.fixed_id = workflow_id is not None
        self.workflow_id = (
            validate_id(workflow_id, "workflow_id") if workflow_id is not None else uuid.uuid4().hex
        )
        self.task = TaskBuilder(self.workflow_id)
        self.status = "new"
        self._bus = EventBus()
        self._running = False
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False
        self._background: Detached | None = None
        self.run_id: str | None = None

    async def start(
        self,
        mode: Mode = "sequential",
        *,
        resume: bool = False,
        keep_going: bool = False,
        on_success: Callable[..., Any] | None = None,
        on_failure: Callable[..., Any] | None = None,
        on_input_change: Literal["reuse", "reset", "raise"] = "reuse",
        fingerprint: str | None = None,
        max_concurrency: int | None = None,
        raise_on_failure: bool = False,
        wait_for_lease: bool | float = False,
        on_wait: Literal["block", "park"] = "block",
        rerun_from: str | None = None,
        on_code_change: Literal["reuse", "rerun", "raise"] = "reuse",
    ) -> AsyncFlow:
        """Run every task; with ``resume=True`` restore those that have a checkpoint.

        Returns when the run ends (at once in ``background`` mode: then
        ``await flow.wait()``). A failed step leaves its task FAILED with
        ``task.error`` set and does not raise, unless ``raise_on_failure``;
        storage and configuration errors always raise.

        Another live runner of the same ``workflow_id`` makes this raise
        ``WorkflowLocked``, or wait for it (``wait_for_lease=True`` or a number
        of seconds).

        A durable wait (``asyncflow.wait``) that is not due blocks the run
        (``on_wait="block"``) or parks it (``on_wait="park"``): the run ends
        with status ``"waiting"`` once nothing else can progress, and
        ``asyncflow.Worker`` or a later ``start(resume=True)`` continues it.

        ``rerun_from=KEY`` (with ``resume=True``) re-runs that task and every
        task that depends on it; ``on_code_change`` decides what a restored
        step whose code changed does: ``"reuse"`` (default, with a WARNING),
        ``"rerun"`` or ``"raise"``. Each start is a run with a new
        ``flow.run_id`` and a summary in ``{workflow_id}/runs/``.
        """
        if rerun_from is not None and not resume:
            raise ConfigurationError(
                "rerun_from needs resume=True (a fresh run re-runs everything)"
            )
        if on_code_change not in CODE_CHANGE_POLICIES:
            raise ConfigurationError(
                f"on_code_change must be one of {', '.join(CODE_CHANGE_POLICIES)},"
                f" got {on_code_change!r}"
            )
        self._check_start(
            mode,
            resume,
            on_success,
            on_failure,
            on_input_change,
            fingerprint,
            max_concurrency,
            wait_for_lease,
        )
        if on_wait not in _ON_WAIT:
            raise ConfigurationError(f"on_wait must be 'block' or 'park', got {on_wait!r}")
        self._running = True
        self._cancel_requested = False
        for task in self.task.queue:
            task.reset()
        options = _RunOptions(
            mode=mode,
            resume=resume,
            keep_going=keep_going,
            on_success=on_success,
            on_failure=on_failure,
            on_input_change=on_input_change,
            fingerprint=fingerprint,
            max_concurrency=max_concurrency,
            raise_on_failure=raise_on_failure,
            wait_for_lease=wait_for_lease,
            on_wait=on_wait,
            rerun_from=rerun_from,
            on_code_change=on_code_change,
        )
        self.run_id = new_run_id()
        if mode == "background":

            async def job() -> None:
                await self._run(options)

            self._background = Detached(job, self.workflow_id)
            return self
        self._background = None
        await self._run(options)
        return self

    def _check_start(
        self,
        mode: object,
        resume: object,
        on_success: object,
        on_failure: object,
        on_input_change: object,
        fingerprint: object,
        max_concurrency: object,
        wait_for_lease: object,
    ) -> None:
        if self._running:
            raise ConfigurationError(
                f"workflow {self.workflow_id} is already running on this object;"
                " await flow.wait() first"
            )
        if mode not in MODES:
            raise ConfigurationError(
                f"mode must be one of {', '.join(MODES)}, got {mode!r}"
                f"{close_matches(str(mode), list(MODES))}"
            )
        check_graph(self.task.queue, mode)
        if on_input_change not in _POLICIES:
            raise ConfigurationError(
                f"on_input_change must be one of {', '.join(_POLICIES)}, got {on_input_change!r}"
            )
        for name, value in (("on_success", on_success), ("on_failure", on_failure)):
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name} must be callable, got {value!r}")
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise ConfigurationError(f"fingerprint must be a str, got {fingerprint!r}")
        if max_concurrency is not None and (
            type(max_concurrency) is not int or max_concurrency < 1
        ):
            raise ConfigurationError(
                f"max_concurrency must be an int >= 1 or None, got {max_concurrency!r}"
            )
        if (
            wait_for_lease is not True
            and wait_for_lease is not False
            and (
                isinstance(wait_for_lease, bool)
                or not isinstance(wait_for_lease, (int, float))
                or wait_for_lease < 0
            )
        ):
            raise ConfigurationError(
                f"wait_for_lease must be a bool or seconds >= 0, got {wait_for_lease!r}"
            )
        if resume and not self.fixed_id:
            raise ConfigurationError(
                "resume=True needs a fixed workflow id: AsyncFlow(workflow_id='...'),"
                " so that a later run can find this run's checkpoints"
            )

    async def _run(self, options: _RunOptions) -> None:
        mode = options.mode
        tasks = self.task.queue
        clock = time.perf_counter()
        self.status = "running"
        storage = self.config.storage
        lease = Lease(
            storage,
            self.workflow_id,
            ttl=self.config.lease_ttl,
            renew_every=self.config.lease_renew_every,
        )
        recorder = RunRecorder(
            storage,
            self.workflow_id,
            self.run_id or new_run_id(),
            mode,
            options.resume,
            rerun_from=options.rerun_from,
        )
        manifest: Manifest | None = None
        raised: BaseException | None = None
        runner: Runner | None = None
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:
                    scope.cancel()
                logger.info(
                    "%s: starting %d task(s), mode=%s resume=%s",
                    self.workflow_id,
                    len(tasks),
                    mode,
                    options.resume,
                )
                if self._bus.active:
                    self._bus.publish(
                        events.WorkflowStarted(
                            workflow_id=self.workflow_id,
                            mode=mode,
                            resume=options.resume,
                            tasks=len(tasks),
                        )
                    )
                await lease.acquire(options.wait_for_lease)

                async def body() -> None:
                    nonlocal manifest, runner
                    manifest, records = await self._prepare(options, recorder)
                    runner = Runner(
                        workflow_id=self.workflow_id,
                        config=self.config,
                        bus=self._bus,
                        records=records,
                        keep_going=options.keep_going,
                        lease=lease,
                        on_code_change=options.on_code_change,
                    )
                    runner.on_wait = options.on_wait
                    parent = PARENT.set(
                        Parent(
                            config=self.config,
                            workflow_id=self.workflow_id,
                            resume=options.resume,
                            max_concurrency=options.max_concurrency,
                        )
                    )

                    async def steps() -> None:
                        await MODES[mode](runner, tasks, options.max_concurrency)

                    try:
                        async with runner.committer.running():
                            await recorder.alongside(steps, tasks, manifest, lease, runner)
                    finally:
                        PARENT.reset(parent)
                    if runner.stale_blobs:  # outputs offloaded by records this run replaced
                        await collect_garbage(
                            storage, self.workflow_id, candidates=runner.stale_blobs
                        )

                await _with_heartbeat(lease, body)
            failed = [t for t in tasks if t.status is TaskStatus.FAILED]
            parked = runner.parked if runner is not None else {}
            if scope.cancelled_caught:
                status = "cancelled"
            else:
                status = "failed" if failed else "waiting" if parked else "completed"
            if manifest is not None:
                lease.ensure()
                final = dataclasses.replace(
                    _with_children(manifest, tasks),
                    waiting={key: spec.to_json() for key, spec in parked.items()},
                    due_at=due_at(parked.values()),
                )
                await recorder.end(status, tasks, final)
        except BaseException as exc:
            raised = exc
            ending = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else "failed"
            if isinstance(exc, KeyboardInterrupt):
                ending = "cancelled"
            if manifest is not None and not isinstance(exc, LeaseLost):
                await recorder.end_after(ending, tasks, _with_children(manifest, tasks), exc)
            self.status = ending
            self._finish(ending, clock)
            raise
        finally:
            try:
                await lease.release_after(raised)
            finally:
                self._scope = None
                self._running = False
        on_success = options.on_success
        on_failure = options.on_failure
        self.status = status
        watched = self._bus.active  # before WorkflowFinished ends the streams
        self._finish(status, clock)
        if (
            status == "failed"
            and on_failure is None
            and not options.raise_on_failure
            and not watched
        ):
            report_unhandled(self.workflow_id, recorder.run_id, tasks)
        if status == "completed" and on_success is not None:
            await call_callback(on_success, tasks=tasks)
        elif status == "failed" and on_failure is not None:
            await call_callback(on_failure, tasks=tasks)
        if options.raise_on_failure and failed:
            first = failed[0]
            if isinstance(first.error, TaskTimeout):
                raise first.error
            raise TaskFailed(
                f"step {first.name} (key {first.key}) failed after {first.attempts} attempt(s):"
                f" {first.error!r}",
                key=first.key,
                step=first.name,
            ) from first.error

    def _finish(self, status: str, clock: float) -> None:
        tasks = self.task.queue
        skipped = sum(1 for t in tasks if t.restored)
        completed = sum(1 for t in tasks if t.status is TaskStatus.COMPLETED) - skipped
        failed = sum(1 for t in tasks if t.status is TaskStatus.FAILED)
        duration = time.perf_counter() - clock
        logger.info(
            "%s: %s in %.3fs (%d ran, %d restored, %d failed)",
            self.workflow_id,
            status,
            duration,
            completed,
            skipped,
            failed,
        )
        if self._bus.active:
            self._bus.publish(
                events.WorkflowFinished(
                    workflow_id=self.workflow_id,
                    status=status,
                    duration=duration,
                    completed=completed,
                    skipped=skipped,
                    failed=failed,
                )
            )

    async def _prepare(
        self, options: _RunOptions, recorder: RunRecorder
    ) -> tuple[Manifest, dict[str, CheckpointRecord]]:
        """Read the manifest, apply the input-change policy, load what resume needs."""
        resume, policy = options.resume, options.on_input_change
        fingerprint, mode = options.fingerprint, options.mode
        only_if_waiting = options.only_if_waiting
        storage = self.config.storage
        serializer = self.config.serializer
        where = manifest_key(self.workflow_id)
        # A fresh run uses nothing of the last run.json: not read (a round trip saved).
        blob = await storage.read(where) if resume or only_if_waiting else None
        previous = Manifest.decode(blob.data, where) if blob is not None else None
        if only_if_waiting and (previous is None or previous.status != "waiting"):
            raise NotParked(self.workflow_id, previous.status if previous else None)
        payloads = [task.initial_context.storage for task in self.task.queue]
        if fingerprint is None:
            try:
                fingerprint = fingerprint_of(payloads, serializer)
            except SerializationError:
                if resume:
                    raise
                fingerprint = None
        records: dict[str, CheckpointRecord] = {}
        if resume and previous is not None:
            await _refuse_positional(storage, previous, self.task.queue)
        if resume:
            stored = previous.fingerprint if previous is not None else None
            reset = False
            if stored is not None and stored != fingerprint:
                if policy == "raise":
                    raise InputChangedError(
                        f"workflow {self.workflow_id}: the initial contexts differ from the"
                        " checkpointed run's; pass on_input_change='reset' to start over or"
                        " 'reuse' to keep the checkpoints"
                    )
                if policy == "reset":
                    logger.info("%s: inputs changed; clearing checkpoints", self.workflow_id)
                    await clear_for_new_run(storage, self.workflow_id)
                    reset = True
                else:
                    fingerprint = stored
            if not reset:
                records = await load_records(
                    storage,
                    self.workflow_id,
                    [task.key for task in self.task.queue],
                    serializers={serializer.name: serializer},
                    signing_key=self.config.signing_key,
                    concurrency=self.config.read_concurrency,
                )
            if options.rerun_from is not None:
                await invalidate(
                    storage, self.workflow_id, self.task.queue, options.rerun_from, mode, records
                )
        else:
            await clear_for_new_run(storage, self.workflow_id)
        now = time.time()
        manifest = Manifest(
            workflow_id=self.workflow_id,
            status="running",
            fingerprint=fingerprint,
            mode=mode,
            tasks=tuple(task.key for task in self.task.queue),
            steps=tuple(task.name for task in self.task.queue),
            depends_on={t.key: t.depends_on for t in self.task.queue if t.depends_on},
            kinds={t.key: t.kind for t in self.task.queue if t.kind != "step"},
            over={t.key: t.over for t in self.task.queue if t.over is not None},
            keys="name",
            created_at=previous.created_at if previous is not None and resume else now,
            updated_at=now,
            run_id=recorder.run_id,
            groups=tuple(task.group_name for task in self.task.queue),
            host=recorder.host,
            pid=recorder.pid,
            started_at=recorder.started_at,
        )
        data = manifest.encode()
        with anyio.CancelScope(shield=True):
            if storage.persistent:
                # Two independent keys side by side: one round trip of latency.
                await run_all([functools.partial(storage.write, where, data), recorder.begin])
            else:
                await storage.write(where, data)
                await recorder.begin()
        return manifest, records

    async def _resume_parked(self, mode: str) -> None:
        """A worker's resume: ``start(resume=True, on_wait="park")``, but only of a parked run.

        The check is made under the lease, so of two workers that both saw
        the run parked, the second finds it no longer waiting and raises
        ``NotParked`` before anything is run or written.
        """
        self._check_start(mode, True, None, None, "reuse", None, None, False)
        self._running = True
        self._cancel_requested = False
        for task in self.task.queue:
            task.reset()
        options = _RunOptions(
            mode=mode,
            resume=True,
            keep_going=False,
            on_success=None,
            on_failure=None,
            on_input_change="reuse",
            fingerprint=None,
            max_concurrency=None,
            raise_on_failure=False,
            wait_for_lease=False,
            on_wait="park",
            only_if_waiting=True,
        )
        self._background = None
        self.run_id = new_run_id()
        await self._run(options)

    async def wait(self) -> None:
        """Join a background run; raise what it raised. Returns at once otherwise."""
        if self._background is not None:
            await self._background.wait()

    def cancel(self) -> None:
        """Stop the current run; committed checkpoints stay, the interrupted step has none."""
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()

    def events(self, maxlen: int = 10_000) -> EventStream:
        """Subscribe now to the events of the current or next run.

        Iterate with ``async for``; the stream ends after ``WorkflowFinished``.
        """
        return self._bus.subscribe(maxlen)

    async def schedule(self, cron: str, **options: Any) -> None:
        """Run this flow at every tick of ``cron`` on the caller's loop, until cancelled.

        ``overlap="skip" | "queue" | "parallel"``, ``resume=True``,
        ``max_parallel``, ``clock``, ``tz``, ``grace``, ``mode`` and more: see
        ``asyncflow.schedule.Scheduler`` and docs/scheduling.md. Each run is
        a new ``AsyncFlow`` with these tasks; this object is never started.
        Needs the ``scheduler`` extra (croniter).
        """
        from asyncflow._core.schedule import Scheduler

        await Scheduler(self, cron, **options).run()

    def result_task(self) -> list[Task]:
        return list(self.task.queue)

    def result_context(self) -> list[Context]:
        return [task.current_context for task in self.task.queue]

    def result_storage(self) -> list[Any]:
        return [task.current_context.storage for task in self.task.queue]

    def __repr__(self) -> str:
        return f"<AsyncFlow {self.workflow_id} {len(self.task.queue)} tasks {self.status}>"
