"""``AsyncFlow``: a list of steps, run on the caller's event loop, checkpointed."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import anyio

from asyncflow import events
from asyncflow._core.action import Action
from asyncflow._core.background import Detached
from asyncflow._core.bus import EventBus, EventStream
from asyncflow._core.config import Config
from asyncflow._core.context import Context
from asyncflow._core.run_options import RunOptions, check_options, infer_mode
from asyncflow._core.runner import call_callback
from asyncflow._core.runs import report_unhandled
from asyncflow._core.session import RunSession
from asyncflow._core.subflow import ChildFlow
from asyncflow._core.task import Task, TaskBuilder, TaskStatus
from asyncflow._kernel.checkpoint import encode_output
from asyncflow._kernel.errors import ConfigurationError, TaskFailed, TaskTimeout
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.summary import new_run_id

__all__ = ["AsyncFlow", "Mode"]

logger = logging.getLogger("asyncflow")

Mode = Literal["sequential", "sequential_group", "background", "parallel", "graph"]


def _as_child(step: object, key: str | None) -> tuple[Action, str] | None:
    """The step running ``step`` as child flow ``key`` of the flow it is added to."""
    if not isinstance(step, AsyncFlow):
        return None
    if key is None:
        if not step.fixed_id:
            raise ConfigurationError(
                "a child flow needs task.add(child, key=...) or a fixed"
                " AsyncFlow(workflow_id=...) to name its checkpoints"
            )
        key = step.workflow_id
    validate_id(key, "task key")
    action = Action(ChildFlow(step, key))
    action.name = step.workflow_id if step.fixed_id else key
    return action, key


class AsyncFlow:
    """A workflow: add steps with ``flow.task.add``, run them with ``await flow.start()``.

    ``workflow_id`` names the checkpoints; without one a random id is used and
    the run cannot be resumed by another process.
    """

    def __init__(
        self, config: Config | None = None, workflow_id: str | uuid.UUID | None = None
    ) -> None:
        if config is not None and not isinstance(config, Config):
            raise ConfigurationError(f"config must be an asyncflow Config, got {config!r}")
        self.config = config if config is not None else Config()
        if isinstance(workflow_id, uuid.UUID):  # Dotflow's examples pass uuid4()
            workflow_id = str(workflow_id)
        elif workflow_id is not None and not isinstance(workflow_id, str):
            raise ConfigurationError(
                f"workflow_id must be a str or a uuid.UUID, got {type(workflow_id).__name__}"
            )
        self.fixed_id = workflow_id is not None
        self.workflow_id = (
            validate_id(workflow_id, "workflow_id") if workflow_id is not None else uuid.uuid4().hex
        )
        self.task = TaskBuilder(self.workflow_id, child=_as_child)
        self.status = "new"
        self._bus = EventBus()
        self._running = False
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False
        self._background: Detached | None = None
        #: What the first tasks receive as ``previous_context`` (``copy(input=...)``).
        self._input: Context | None = None
        #: A child flow's parent workflow id, recorded in its ``run.json``.
        self._parent: str | None = None
        self.run_id: str | None = None

    async def start(
        self,
        mode: Mode | None = None,
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

        Without ``mode``, a flow with ``depends_on`` or ``task.map`` runs as
        ``"graph"``, any other as ``"sequential"`` (as ``asyncflow run`` does).
        """
        chosen = infer_mode(self.task.queue) if mode is None else mode
        options = RunOptions(
            mode=chosen,
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
        self._begin(options)
        if chosen == "background":

            async def job() -> None:
                await self._run(options)

            self._background = Detached(job, self.workflow_id)
            return self
        self._background = None
        await self._run(options)
        return self

    def _begin(self, options: RunOptions) -> None:
        """Check ``options``, then claim this object for a new run (``flow.run_id``)."""
        check_options(
            options,
            workflow_id=self.workflow_id,
            fixed_id=self.fixed_id,
            tasks=self.task.queue,
            running=self._running,
        )
        self._running = True
        self._cancel_requested = False
        for task in self.task.queue:
            task.reset()
        self.run_id = new_run_id()

    async def _run(self, options: RunOptions) -> None:
        clock = time.perf_counter()
        self.status = "running"
        session = RunSession(
            workflow_id=self.workflow_id,
            config=self.config,
            bus=self._bus,
            tasks=self.task.queue,
            run_id=self.run_id or new_run_id(),
            options=options,
            first_input=self._input,
            first_digest=self._input_digest(),
            parent=self._parent,
        )
        raised: BaseException | None = None
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:
                    scope.cancel()
                self._announce(options)
                await session.run()
            status = await session.end(cancelled=scope.cancelled_caught)
        except BaseException as exc:
            raised = exc
            self.status = await session.end_after(exc)
            self._finish(self.status, clock)
            raise
        finally:
            try:
                await session.lease.release_after(raised)
            finally:
                self._scope = None
                self._running = False
        self.status = status
        watched = self._bus.active  # before WorkflowFinished ends the streams
        self._finish(status, clock)
        await self._after(status, options, session.recorder.run_id, watched)

    def _announce(self, options: RunOptions) -> None:
        tasks = self.task.queue
        logger.info(
            "%s: starting %d task(s), mode=%s resume=%s",
            self.workflow_id,
            len(tasks),
            options.mode,
            options.resume,
        )
        if self._bus.active:
            self._bus.publish(
                events.WorkflowStarted(
                    workflow_id=self.workflow_id,
                    mode=options.mode,
                    resume=options.resume,
                    tasks=len(tasks),
                )
            )

    async def _after(self, status: str, options: RunOptions, run_id: str, watched: bool) -> None:
        """What the caller asked for once the run ended: callbacks, or the failure raised.

        A failure that nothing handles (no ``raise_on_failure``, no
        ``on_failure``, no events subscriber) is reported on stderr.
        """
        tasks = self.task.queue
        failed = [t for t in tasks if t.status is TaskStatus.FAILED]
        unhandled = options.on_failure is None and not options.raise_on_failure and not watched
        if status == "failed" and unhandled:
            report_unhandled(self.workflow_id, run_id, tasks)
        if status == "completed" and options.on_success is not None:
            await call_callback(options.on_success, tasks=tasks)
        elif status == "failed" and options.on_failure is not None:
            await call_callback(options.on_failure, tasks=tasks)
        if options.raise_on_failure and failed:
            first = failed[0]
            if isinstance(first.error, TaskTimeout):
                raise first.error
            raise TaskFailed(
                f"step {first.name} (key {first.key}) failed after {first.attempts} attempt(s):"
                f" {first.error!r}",
                key=first.key,
                step=first.name,
                attempt=first.attempts,
                cause=first.error,
            ) from first.error

    def _input_digest(self) -> str | None:
        """The input digest the first tasks are checkpointed with, as a chain's would be."""
        value = self._input.storage if self._input is not None else None
        if value is None:
            return None
        return encode_output(self.config.serializer, value, self.workflow_id).digest

    def copy(
        self, workflow_id: str, *, config: Config | None = None, input: Any = None
    ) -> AsyncFlow:
        """A new flow with these tasks (keys, dependencies, maps, child flows) as ``workflow_id``.

        ``config`` defaults to this flow's. ``input`` is what the copy's first
        tasks (the first of a chain, a graph's tasks without dependencies)
        receive as ``previous_context``, as a child flow's receive its parent
        step's input; a ``Context`` is passed as it is. A scheduler's tick, a
        worker's resume and a child flow's run are such copies.
        """
        new = AsyncFlow(config=self.config if config is None else config, workflow_id=workflow_id)
        new.task.copy_from(self.task)
        if input is not None:
            new._input = input if isinstance(input, Context) else Context(storage=input)
        return new

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

    async def _resume_parked(self, mode: str) -> None:
        """A worker's resume: ``start(resume=True, on_wait="park")``, but only of a parked run.

        The check is made under the lease, so of two workers that both saw
        the run parked, the second finds it no longer waiting and raises
        ``NotParked`` before anything is run or written.
        """
        options = RunOptions(mode=mode, resume=True, on_wait="park", only_if_waiting=True)
        self._begin(options)
        self._background = None
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
