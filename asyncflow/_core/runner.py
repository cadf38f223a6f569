"""Running one task: restore it from its checkpoint, or execute and commit it."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

from asyncflow import events
from asyncflow._core.attempts import run_attempts
from asyncflow._core.bus import EventBus
from asyncflow._core.commit import make_committer
from asyncflow._core.config import Config
from asyncflow._core.context import Context, make_context
from asyncflow._core.failures import carry_fields
from asyncflow._core.task import Task, TaskStatus
from asyncflow._core.waits import WaitAction, WaitParked, WaitSpec, run_wait
from asyncflow._kernel.blobs import offload
from asyncflow._kernel.checkpoint import (
    CheckpointRecord,
    EncodedOutput,
    RecordEncoder,
    encode_output,
)
from asyncflow._kernel.errors import CheckpointMismatch, SerializationError, TaskTimeout
from asyncflow._kernel.layout import task_prefix, task_storage_key
from asyncflow._kernel.lease import Lease
from asyncflow._kernel.snapshot import TaskSnapshot

__all__ = ["CODE_CHANGE_POLICIES", "Runner", "call_callback"]

#: What a restored step whose code hash changed does (``start(on_code_change=...)``).
CODE_CHANGE_POLICIES = ("reuse", "rerun", "raise")

logger = logging.getLogger("asyncflow")


async def call_callback(callback: Callable[..., Any], **kwargs: Any) -> None:
    """Call a user callback, awaiting it if it is async; Dotflow passes keywords."""
    result = callback(**kwargs)
    if inspect.isawaitable(result):
        await result


#: A run gives the event loop a turn at least this often (seconds).
_YIELD_EVERY = 0.02


_UTC = dt.timezone.utc


def _utcnow() -> dt.datetime:
    return dt.datetime.now(_UTC)


class Runner:
    """The state of one run that every task of it shares.

    ``halted`` is set when a task fails and ``keep_going`` is false, so that
    concurrent modes stop starting new tasks.
    """

    def __init__(
        self,
        *,
        workflow_id: str,
        config: Config,
        bus: EventBus,
        records: dict[str, CheckpointRecord],
        keep_going: bool,
        lease: Lease | None = None,
        on_code_change: str = "reuse",
        on_wait: str = "block",
        first_input: Context | None = None,
        first_digest: str | None = None,
    ) -> None:
        self.lease = lease
        self.on_code_change = on_code_change
        self.workflow_id = workflow_id
        self.config = config
        self.storage = config.storage
        self.serializer = config.serializer
        self.bus = bus
        self.records = records
        #: the resume's snapshot (``asyncflow._kernel.snapshot``): a map's children
        #: are restored through it too; ``None`` on a fresh run
        self.snapshot: TaskSnapshot | None = None
        self.keep_going = keep_going
        self.halted = False
        self.on_wait = on_wait  # or "park": see asyncflow._core.waits
        #: What a task with nothing before it receives (a child flow: its parent's input).
        self.first_input = first_input or Context(workflow_id=workflow_id)
        self.first_digest = first_digest
        self.parked: dict[str, WaitSpec] = {}
        self._yielded = time.monotonic()
        self._restored_at: dt.datetime | None = None
        self.tasks_prefix = task_prefix(workflow_id)  # task_storage_key, without a call per step
        self.encoder = RecordEncoder(workflow_id, self.serializer.name, config.signing_key)
        self.max_output_bytes = config.max_output_bytes
        self.offload_over = config.offload_over
        self.stale_blobs: set[str] = set()  # blobs of replaced records, for collect_garbage
        self.committer = make_committer(config.durability, self.storage, lease, bus, workflow_id)
        self.finished: list[Task] = []  # tasks that ended, for the progress index (runs.py)

    async def step(self, task: Task, previous: Context, input_digest: str | None) -> bool:
        """Restore or run ``task``; true if it ends COMPLETED."""
        if self.yield_due():
            await anyio.lowlevel.checkpoint()
        if self.restored(task, previous, input_digest):
            return True
        return await self.run(task, input_digest)

    def yield_due(self) -> bool:
        """True at most every ``_YIELD_EVERY`` s: the caller then gives the loop a turn.

        Steps that never suspend (trivial steps on StorageDefault, restores)
        would otherwise hold the loop for the whole run: the app stalls and the
        lease heartbeat starves until the lease is lost.
        """
        now = time.monotonic()
        if now - self._yielded > _YIELD_EVERY:
            self._yielded = now
            return True
        return False

    def restored(self, task: Task, previous: Context, input_digest: str | None) -> bool:
        """``step``'s first half, without a coroutine: restore ``task`` if its record fits.

        False when there is no record, or one made from another input (or by
        changed code that ``on_code_change`` re-runs): then ``run`` it.
        """
        task.previous_context = previous
        record = self.records.get(task.key)
        if record is None:
            return False
        if record.step != task.name:
            raise CheckpointMismatch(
                f"checkpoint {task_storage_key(self.workflow_id, task.key)} was written by"
                f" step {record.step!r} but the step at key {task.key!r} is now"
                f" {task.name!r}; give steps stable keys with task.add(..., key=...)"
                " or clear the workflow"
            )
        if record.input_digest == input_digest and (
            task.step.code_unchanged(record.code_hash) or self._code_changed(task)
        ):
            self._restore(task, record)
            self.finished.append(task)
            return True
        logger.info(
            "%s: checkpoint of %s (key %s) was made from a different input; re-running it",
            self.workflow_id,
            task.name,
            task.key,
        )
        return False

    async def run(self, task: Task, input_digest: str | None) -> bool:
        """``step``'s second half: execute ``task`` and commit its record."""
        await self._execute(task, input_digest)
        self.finished.append(task)
        if task.callback is not None:
            await call_callback(task.callback, task=task)
        if task.status is TaskStatus.FAILED and not self.keep_going:
            self.halted = True
        return task.status is TaskStatus.COMPLETED

    def restore(self, task: Task, record: CheckpointRecord) -> None:
        """Complete ``task`` from ``record`` (the graph scheduler's maps use it too)."""
        self._restore(task, record)

    def fail(self, task: Task, exc: BaseException) -> None:
        """Mark ``task`` FAILED with ``exc``, logged and published like a failed step."""
        self._fail(task, exc, None)

    async def encode_output(self, task: Task, output: Any, step: str) -> EncodedOutput:
        """``output`` as ``task``'s record will hold it: strict, within the size limit,
        offloaded to a blob when large. ``SerializationError`` if refused."""
        encoded = encode_output(self.serializer, output, step, self.max_output_bytes)
        if self.offload_over is not None and len(encoded.payload) > self.offload_over:
            encoded = await offload(self.storage, self.workflow_id, encoded)
        self._replacing(task)
        return encoded

    def _replacing(self, task: Task) -> None:
        replaced = self.records.get(task.key)
        if replaced is not None and replaced.blob is not None:
            self.stale_blobs.add(replaced.blob[0])

    def _code_changed(self, task: Task) -> bool:
        """``on_code_change`` for a checkpoint written by other code: true to restore it."""
        where = task_storage_key(self.workflow_id, task.key)
        if self.on_code_change == "raise":
            raise CheckpointMismatch(
                f"checkpoint {where} of step {task.name!r} was written by different code;"
                " pass on_code_change='reuse' to keep it or 'rerun' to run the step again"
            )
        if self.on_code_change == "rerun":
            logger.info(
                "%s: step %s (key %s) changed; re-running it", self.workflow_id, task.name, task.key
            )
            return False
        logger.warning(
            "%s: step %s (key %s) changed since its checkpoint was written; reusing the"
            " checkpoint (on_code_change='rerun' runs it again)",
            self.workflow_id,
            task.name,
            task.key,
        )
        return True

    def _restore(self, task: Task, record: CheckpointRecord) -> None:
        if self._restored_at is None:
            # One clock reading serves every restored context of the run: a
            # datetime per context was a third of the cost of a restore.
            self._restored_at = _utcnow()
        task.current_context = make_context(
            record.output, task.task_id, self.workflow_id, task.key, self._restored_at
        )
        task.digest = record.output_digest
        task.attempts = record.attempts
        task.duration = record.finished_at - record.started_at
        task.restored = True
        task.status = TaskStatus.COMPLETED
        if self.bus.subscribers:
            self.bus.task_event(events.TaskSkipped, self.workflow_id, task, reason="checkpoint")

    async def _execute(self, task: Task, input_digest: str | None) -> None:
        action = task.step
        kwargs: dict[str, Context] = {}
        if "initial_context" in action.params:
            kwargs["initial_context"] = task.initial_context
        if "previous_context" in action.params:
            kwargs["previous_context"] = task.previous_context
        task.status = TaskStatus.IN_PROGRESS
        # One wall-clock reading per end of the step serves the record, the
        # task's times and the output's context (a datetime each cost ~0.3 µs).
        task.started = started = time.time()
        clock = time.perf_counter()
        try:
            if (
                action.attempts == 1
                and action.is_async
                and action.timeout is None
                and self.config.executor is None
                and not isinstance(action, WaitAction)
            ):
                # The common step, one attempt awaited here: what _attempts
                # does for it without its frame, loop and result tuple.
                task.attempts = 1
                if self.bus.subscribers:
                    self.bus.task_event(events.TaskStarted, self.workflow_id, task, attempt=1)
                try:
                    output = await action.func(**kwargs)
                except WaitParked:  # a child flow parked: so does this step
                    raise
                except Exception as exc:
                    task.errors.append(exc)
                    self._fail(task, exc, None)
                    return
                if isinstance(output, Context):
                    output = output.storage
            else:
                if isinstance(action, WaitAction):
                    ok, output = await self._wait(task, action)
                else:
                    ok, output = await run_attempts(
                        task,
                        action,
                        kwargs,
                        bus=self.bus,
                        workflow_id=self.workflow_id,
                        executor=self.config.executor,
                        fail=self._fail,
                    )
                if not ok:
                    return
            try:
                if self.offload_over is None:  # no await: one coroutine less per step
                    encoded = encode_output(
                        self.serializer, output, action.name, self.max_output_bytes
                    )
                    self._replacing(task)
                else:
                    encoded = await self.encode_output(task, output, action.name)
            except SerializationError as exc:
                self._fail(task, exc, clock)
                return
            finished = time.time()
            data = self.encoder.encode(
                key=task.key,
                task_id=task.task_id,
                step=action.name,
                module=action.module,
                attempts=task.attempts,
                started_at=started,
                finished_at=finished,
                input_digest=input_digest,
                code_hash=action.code_hash,
                output=encoded,
            )
            await self.committer.commit(task, f"{self.tasks_prefix}{task.key}.json", data)
            done = time.time()
        except WaitParked as parked:
            task.status = TaskStatus.WAITING
            self.parked.update(parked.entries(task.key))
            return
        except anyio.get_cancelled_exc_class():
            task.status = TaskStatus.CANCELLED
            task.finished = time.time()
            raise
        except BaseException as exc:
            task.status = TaskStatus.FAILED
            task.error = exc
            task.finished = time.time()
            raise
        task.digest = encoded.digest
        task.current_context = make_context(
            output, task.task_id, self.workflow_id, task.key, dt.datetime.fromtimestamp(done, _UTC)
        )
        task.status = TaskStatus.COMPLETED
        task.finished = done
        task.duration = time.perf_counter() - clock
        if self.bus.subscribers:
            self.bus.task_event(
                events.TaskCompleted,
                self.workflow_id,
                task,
                attempts=task.attempts,
                duration=task.duration,
            )

    async def _wait(self, task: Task, action: WaitAction) -> tuple[bool, Any]:
        task.attempts = 1
        if self.bus.subscribers:
            self.bus.task_event(events.TaskStarted, self.workflow_id, task, attempt=1)
        try:
            return True, await run_wait(self, task, action)
        except TaskTimeout as exc:
            task.errors.append(exc)
            self._fail(task, exc, None)
            return False, None

    def announce_wait(self, task: Task, spec: WaitSpec) -> None:
        """A wait is not due yet: say so (it blocks or parks next)."""
        logger.info(
            "%s: step %s (key %s) waits for %s",
            self.workflow_id,
            task.name,
            task.key,
            spec.signal if spec.kind == "signal" else f"{spec.wake_at:.3f}",
        )
        if self.bus.subscribers:
            self.bus.task_event(
                events.TaskWaiting,
                self.workflow_id,
                task,
                wait=spec.kind,
                signal=spec.signal,
                wake_at=spec.wake_at,
                deadline=spec.deadline,
                parked=self.on_wait == "park",
            )

    def _fail(self, task: Task, exc: BaseException, clock: float | None) -> None:
        carry_fields(exc, task.attempts or None)
        task.status = TaskStatus.FAILED
        task.error = exc
        task.finished = time.time()
        if task.started is not None:
            task.duration = task.finished - task.started
        logger.error(
            "%s: step %s (key %s) failed after %d attempt(s): %r",
            self.workflow_id,
            task.name,
            task.key,
            task.attempts,
            exc,
        )
        self.bus.task_event(
            events.TaskFailed,
            self.workflow_id,
            task,
            attempts=task.attempts,
            error=repr(exc),
        )
