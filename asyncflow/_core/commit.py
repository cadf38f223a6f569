"""How a finished step's checkpoint reaches storage: the durability modes.

``Config(durability=...)``, as in LangGraph:

* ``"sync"`` (default): the record is durable before the next step starts and
  before the task is reported COMPLETED. A crash loses at most the step that
  was running (it has no record and runs again on resume).
* ``"async"``: the write is started in the background and the chain goes on
  at once, so the next step overlaps it. Each chain (a sequential chain, a
  group of ``sequential_group``, a worker of ``parallel``) has at most one
  write in flight and its writes land in order; the end of the run (and so
  ``start()`` returning, or ``wait()`` in background mode) waits for every
  write and raises the first storage error. A crash loses at most one
  checkpoint per chain (the one in flight) on top of the running step.
* ``"batch"`` (group commit): finished tasks queue their records and wait;
  one flusher writes everything queued in one ``write_many`` call when the
  storage has one (``StorageFile``: one thread hop, the directory fsynced
  once per batch) or as concurrent writes otherwise. A task is COMPLETED only
  once its batch is durable, as with ``"sync"``; what a crash loses is the
  batch being written. It pays off when many tasks finish together
  (``parallel``); a single chain degrades to ``"sync"``.

In every mode each record is written with one atomic ``write`` (a reader sees
the old record or the new one, never a torn one), the lease is checked right
before each record (or batch) is handed to storage, and writes are shielded
from cancellation: a cancelled run still finishes the writes it started.

A storage with a ``background_writer()`` (``StorageFile``) gets its records
through one long-lived writer thread instead of a thread hop per write
(``asyncflow._kernel.writer``): the loop is woken only when a task waits for a
record (``sync``, a batch, a chain's next commit finding its previous record
still in flight, the end of the run), so an ``async`` write that finishes
while the next step awaits costs the loop nothing. Records queued together
from several chains are written as one group commit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Literal

import anyio
import anyio.abc
import anyio.lowlevel

from asyncflow import events
from asyncflow._core.bus import EventBus
from asyncflow._core.task import Task
from asyncflow._kernel.capabilities import Capabilities
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.lease import Lease
from asyncflow._kernel.pack import PACK_MAX_BYTES
from asyncflow._kernel.storage import Storage
from asyncflow._kernel.writer import Ticket, WriterSession

__all__ = ["DURABILITY", "Committer", "Durability", "make_committer"]

Durability = Literal["sync", "async", "batch"]
DURABILITY: tuple[str, ...] = ("sync", "async", "batch")

#: At most this many records per ``write_many`` call or concurrent batch.
MAX_BATCH = 256
#: Concurrent writes of a batch on a storage without ``write_many``.
BATCH_CONCURRENCY = 32


class Committer:
    """``"sync"``: write each record before returning."""

    def __init__(self, storage: Storage, lease: Lease | None, bus: EventBus, workflow_id: str):
        self.storage = storage
        self.lease = lease
        self.bus = bus
        self.workflow_id = workflow_id
        self.capabilities = Capabilities.of(storage)
        # A write that never suspends (StorageDefault) cannot be cancelled
        # midway: no await, and no shield (a cancel scope per step).
        opener = self.capabilities.instant_writer
        self._instant = opener() if opener is not None else None
        #: the storage's writer thread for this run (``StorageFile``), else None
        self.session: WriterSession | None = None
        #: storage key -> bytes of each record known to have landed, for the run's
        #: pack (``asyncflow._core.packing``); ``None`` when not packing, or past
        #: ``PACK_MAX_BYTES``
        self.landed: dict[str, bytes] | None = None
        self._landed_bytes = 0

    def keep(self, where: str, data: bytes) -> None:
        """Remember a record that landed, for the pack; past the size limit, stop."""
        landed = self.landed
        if landed is not None:
            landed[where] = data
            self._landed_bytes += len(data)
            if self._landed_bytes > PACK_MAX_BYTES:
                self.landed = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Around the whole run: on exit every started write has finished."""
        # Probed on the class (see capabilities): a wrapper delegating through
        # ``__getattr__`` must see every write in its own ``write``.
        opener = self.capabilities.background_writer
        writer = opener() if opener is not None else None
        if writer is None:
            yield
            return
        async with writer as session:
            self.session = session
            try:
                yield
            finally:
                self.session = None

    def _ensure(self) -> None:
        if self.lease is not None:
            self.lease.ensure()

    def _written(self, task: Task, where: str, data: bytes, clock: float, end: float) -> None:
        self.bus.task_event(
            events.CheckpointWritten,
            self.workflow_id,
            task,
            storage_key=where,
            size=len(data),
            duration=end - clock,
        )

    async def commit(self, task: Task, where: str, data: bytes) -> None:
        """Hand ``data`` to storage; the lease is checked first (``LeaseLost``)."""
        clock = time.perf_counter()
        self._ensure()
        session = self.session
        if self._instant is not None:
            self._instant(where, data)
        elif session is not None:
            ticket = session.submit(((where, data),))
            with anyio.CancelScope(shield=True):
                await session.wait(ticket)
        else:
            with anyio.CancelScope(shield=True):
                await self.storage.write(where, data)
        if self.landed is not None:
            self.keep(where, data)
        if self.bus.subscribers:
            self._written(task, where, data, clock, time.perf_counter())


class AsyncCommitter(Committer):
    """``"async"``: one background write in flight per chain, in order."""

    def __init__(self, storage: Storage, lease: Lease | None, bus: EventBus, workflow_id: str):
        super().__init__(storage, lease, bus, workflow_id)
        self._group: anyio.abc.TaskGroup | None = None
        self._last: dict[int, anyio.Event] = {}
        self._failure: list[BaseException] = []
        #: per chain, on a writer thread: the record in flight and what its event needs
        self._queued: dict[int, tuple[Ticket, Task, str, bytes, float]] = {}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with super().running():
            if self.session is not None:
                try:
                    yield
                finally:
                    await self._settle_queued()
                return
            async with self._tasks():
                yield

    async def _settle_queued(self) -> None:
        """Every record in flight has landed (shielded); their events are published."""
        assert self.session is not None
        with anyio.CancelScope(shield=True):
            await self.session.settle_all()
        queued, self._queued = self._queued, {}
        for entry in queued.values():
            self._landed(*entry)

    def _landed(self, ticket: Ticket, task: Task, where: str, data: bytes, clock: float) -> None:
        if ticket.error is not None:
            return
        if self.landed is not None:
            self.keep(where, data)
        if self.bus.subscribers:
            self._written(task, where, data, clock, ticket.finished)

    @contextlib.asynccontextmanager
    async def _tasks(self) -> AsyncIterator[None]:
        """Without a writer thread: one shielded background task per write."""
        failed: Exception | None = None
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                try:
                    yield
                except Exception as exc:
                    # Raised as-is below, not wrapped in an ExceptionGroup, once
                    # the writes in flight have finished.
                    failed = exc
        finally:
            self._group = None
            self._last.clear()
        if failed is not None:
            raise failed
        if self._failure:
            raise self._failure[0]

    async def commit(self, task: Task, where: str, data: bytes) -> None:
        session = self.session
        if session is None:
            await self._commit_task(task, where, data)
            return
        session.check()
        chain = anyio.get_current_task().id
        previous = self._queued.get(chain)
        if previous is not None:
            ticket = previous[0]
            if not ticket.done:
                with anyio.CancelScope(shield=True):
                    await session.settle(ticket)  # order per chain: one write in flight
            session.check()
            self._landed(*previous)
        self._ensure()
        clock = time.perf_counter()
        self._queued[chain] = (session.submit(((where, data),)), task, where, data, clock)

    async def _commit_task(self, task: Task, where: str, data: bytes) -> None:
        if self._failure:
            raise self._failure[0]
        chain = anyio.get_current_task().id
        previous = self._last.get(chain)
        if previous is not None and not previous.is_set():
            with anyio.CancelScope(shield=True):
                await previous.wait()  # order per chain: one write in flight
            if self._failure:
                raise self._failure[0]
        self._ensure()
        done = anyio.Event()
        self._last[chain] = done
        assert self._group is not None, "commit() outside running()"
        self._group.start_soon(self._background, task, where, data, done)

    async def _background(self, task: Task, where: str, data: bytes, done: anyio.Event) -> None:
        clock = time.perf_counter()
        try:
            with anyio.CancelScope(shield=True):
                await self.storage.write(where, data)
        except Exception as exc:
            self._failure.append(exc)
            return
        finally:
            done.set()
        if self.landed is not None:
            self.keep(where, data)
        self._written(task, where, data, clock, time.perf_counter())


class BatchCommitter(Committer):
    """``"batch"``: group commit; each caller waits for the batch holding its record."""

    def __init__(self, storage: Storage, lease: Lease | None, bus: EventBus, workflow_id: str):
        super().__init__(storage, lease, bus, workflow_id)
        self._queue: list[tuple[Task, str, bytes, _Slot]] = []
        self._busy = False
        self._write_many = self.capabilities.write_many

    async def commit(self, task: Task, where: str, data: bytes) -> None:
        slot = _Slot()
        self._queue.append((task, where, data, slot))
        with anyio.CancelScope(shield=True):
            if not self._busy:
                # This caller becomes the flusher until the queue is empty;
                # records queued meanwhile ride along in the next batch.
                self._busy = True
                try:
                    # Turns of the loop until one adds nothing: tasks finishing
                    # alongside this one queue their records and share its
                    # flush, instead of waiting a whole flush and then forming
                    # a batch of one.
                    size = 0
                    while size < len(self._queue) < MAX_BATCH:
                        size = len(self._queue)
                        await anyio.lowlevel.checkpoint()
                    while self._queue:
                        batch = self._queue[:MAX_BATCH]
                        del self._queue[: len(batch)]
                        await self._flush(batch)
                finally:
                    self._busy = False
            await slot.event.wait()
        if slot.error is not None:
            raise slot.error

    async def _flush(self, batch: list[tuple[Task, str, bytes, _Slot]]) -> None:
        clock = time.perf_counter()
        try:
            self._ensure()
            items = [(where, data) for _, where, data, _ in batch]
            if self.session is not None:
                # One job for the writer thread: one write, or a group commit.
                await self.session.wait(self.session.submit(items))
            elif self._write_many is not None and len(items) > 1:
                await self._write_many(items)
            elif len(items) == 1:
                await self.storage.write(*items[0])
            else:
                pending = iter(items)

                async def worker() -> None:
                    for where, data in pending:
                        await self.storage.write(where, data)

                await run_all([worker] * min(BATCH_CONCURRENCY, len(items)))
        except Exception as exc:
            for *_, slot in batch:
                slot.error = exc
                slot.event.set()
            return
        end = time.perf_counter()
        for task, where, data, slot in batch:
            if self.landed is not None:
                self.keep(where, data)
            if self.bus.subscribers:
                self._written(task, where, data, clock, end)
            slot.event.set()


class _Slot:
    __slots__ = ("error", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.error: BaseException | None = None


def make_committer(
    durability: str, storage: Storage, lease: Lease | None, bus: EventBus, workflow_id: str
) -> Committer:
    kind = {"sync": Committer, "async": AsyncCommitter, "batch": BatchCommitter}[durability]
    return kind(storage, lease, bus, workflow_id)
