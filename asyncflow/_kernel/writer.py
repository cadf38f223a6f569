"""A long-lived writer thread that makes records durable without waking the event loop.

Why not one ``anyio.to_thread.run_sync`` per record: on small VMs a worker
thread finishing while the loop sleeps (in a step's ``await``) costs the loop
hundreds of µs of wake-up, so an ``async`` write could never overlap the next
step. Here the loop hands jobs to one thread through a queue; the thread
marks each ``Ticket`` done and wakes the loop only if a task is waiting on
that ticket (back-pressure, ``sync`` durability, the end of a run).

Guarantees: jobs run one at a time, in submission order (so the writes of a
chain land in order); a job's error is kept on its ``Ticket`` and on its
``WriterSession`` and raised at the next wait, never dropped; the thread is
not a daemon and stops when the last session closes, after its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence

import anyio

__all__ = ["SharedWriter", "Ticket", "WriterSession", "WriterThread", "call_soon_threadsafe"]

Items = Sequence[tuple[str, bytes]]
WriteOne = Callable[[str, bytes], object]
WriteGroup = Callable[[Items], object]


class Ticket:
    """One job in the writer's queue: its records, and whether they are durable yet."""

    __slots__ = ("_wakes", "done", "error", "finished", "items", "session")

    def __init__(self, items: Items, session: WriterSession) -> None:
        self.items = items
        self.session = session
        self.done = False
        self.error: BaseException | None = None
        #: ``time.perf_counter()`` when the thread finished the job
        self.finished = 0.0
        #: one per task waiting on this ticket (a commit and the end of the run may both)
        self._wakes: list[Callable[[], object]] = []


def call_soon_threadsafe() -> Callable[[Callable[[], object]], object]:
    """How a thread schedules a callback on the running event loop (asyncio or trio)."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon


class WriterThread:
    """One thread, one FIFO of jobs; shared by the runs of one storage through sessions.

    Jobs queued together (from several chains: each chain waits for its
    previous record first) are written as one group by ``write_group``
    (shared flushes); a lone job by ``write_one``. If a group fails, its jobs
    are written again one by one, so that only the bad record fails.
    """

    def __init__(self, write_one: WriteOne, write_group: WriteGroup, name: str) -> None:
        self._write_one = write_one
        self._write_group = write_group
        self._jobs: queue.SimpleQueue[Ticket | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=False)
        self._thread.start()

    def submit(self, ticket: Ticket) -> None:
        self._jobs.put(ticket)

    def stop(self) -> None:
        """Finish every queued job, then end the thread (joined: nothing is left behind)."""
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                return
            group = [first]
            while True:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                group.append(more)
            self._run(group)

    def _run(self, group: list[Ticket]) -> None:
        if len(group) > 1:
            try:
                self._write_group([item for ticket in group for item in ticket.items])
            except BaseException:
                # One bad record must not fail the others (maybe other runs'):
                # each job again on its own, so each error names its own key.
                for ticket in group:
                    self._run([ticket])
                return
            self._settle(group, None)
            return
        (ticket,) = group
        error: BaseException | None = None
        try:
            if len(ticket.items) == 1:
                self._write_one(*ticket.items[0])
            else:
                self._write_group(ticket.items)
        except BaseException as exc:  # kept for the loop; the thread must outlive a bad job
            error = exc
        self._settle(group, error)

    def _settle(self, group: list[Ticket], error: BaseException | None) -> None:
        wakes = []
        finished = time.perf_counter()
        with self._lock:
            for ticket in group:
                ticket.error = error
                ticket.finished = finished
                ticket.done = True
                if error is not None:
                    ticket.session.failed.append(ticket)
                wakes.extend(ticket._wakes)
                ticket._wakes = []
        for wake in wakes:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                wake()

    async def settle(self, ticket: Ticket) -> None:
        """Until ``ticket`` is done. Only a ticket being waited on wakes the loop."""
        if ticket.done:
            return
        event = anyio.Event()
        call = call_soon_threadsafe()
        with self._lock:
            if ticket.done:
                return
            ticket._wakes.append(lambda: call(event.set))
        await event.wait()


class WriterSession:
    """One run's view of a shared ``WriterThread``: its last ticket and its failed ones."""

    def __init__(self, thread: WriterThread) -> None:
        self.thread = thread
        #: tickets whose job failed and whose error nobody has raised yet
        self.failed: list[Ticket] = []
        self.last: Ticket | None = None

    def check(self) -> None:
        """Raise the first write error of this session not yet raised to a waiter."""
        if self.failed:
            error = self.failed[0].error
            assert error is not None
            raise error

    def submit(self, items: Items) -> Ticket:
        ticket = Ticket(items, self)
        self.last = ticket
        self.thread.submit(ticket)
        return ticket

    async def wait(self, ticket: Ticket) -> None:
        """Until ``ticket``'s records are durable; its error is raised here (and only here)."""
        await self.thread.settle(ticket)
        if ticket.error is not None:
            self.failed.remove(ticket)
            raise ticket.error

    async def settle(self, ticket: Ticket) -> None:
        """Until ``ticket``'s job has run; an error stays for ``check``."""
        await self.thread.settle(ticket)

    async def settle_all(self) -> None:
        """Until every job of this session has run (FIFO: the last one done means all)."""
        if self.last is not None:
            await self.thread.settle(self.last)


class SharedWriter:
    """Starts the thread for the first session of a storage and stops it after the last."""

    def __init__(self, write_one: WriteOne, write_group: WriteGroup, name: str) -> None:
        self._args = (write_one, write_group, name)
        self._forget_parent()
        _writers.add(self)

    def _forget_parent(self) -> None:
        """A new start, also in a forked child: the parent's thread is not there, and its
        lock may have been held by another thread at the fork."""
        self._lock = threading.Lock()
        self._thread: WriterThread | None = None
        self._users = 0

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[WriterSession]:
        """Around one run: on exit (even cancelled) every job it submitted has run.

        Raises the session's first write error on a clean exit; an exception
        from the body wins (it already fails the run).
        """
        with self._lock:
            if self._thread is None:
                self._thread = WriterThread(*self._args)
            self._users += 1
            thread = self._thread
        session = WriterSession(thread)
        try:
            yield session
        finally:
            try:
                with anyio.CancelScope(shield=True):
                    await session.settle_all()
            finally:
                self._leave(thread)
        session.check()

    def _leave(self, thread: WriterThread) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0 and self._thread is thread
            if last:
                self._thread = None
        if last:
            thread.stop()  # every session has settled: the join returns at once

    def stop(self) -> None:
        """Storage closed: end the thread if no run uses it."""
        with self._lock:
            thread, self._thread = (self._thread, None) if self._users == 0 else (None, None)
        if thread is not None:
            thread.stop()


_writers: weakref.WeakSet[SharedWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for writer in list(_writers):
        writer._forget_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
