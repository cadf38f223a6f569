"""The writer thread behind ``StorageFile`` commits: order, errors, wake-ups, shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncflow import StorageError
from asyncflow._kernel import writer as writer_module
from asyncflow._kernel.writer import SharedWriter

pytestmark = pytest.mark.anyio


class Disk:
    """Blocking write functions that log what they wrote, from the writer thread."""

    def __init__(self, delay: float = 0.0) -> None:
        self.log: list[str] = []
        self.groups: list[list[str]] = []
        self.delay = delay
        self.fail_on: str | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # the thread holds a job
        self.threads: set[str] = set()

    def one(self, key: str, data: bytes) -> None:
        self.group([(key, data)])

    def group(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        self.gate.wait(10)
        time.sleep(self.delay)
        for key, _ in items:
            if key == self.fail_on:
                raise StorageError(f"file storage cannot write {key!r}: disk full")
        self.groups.append([key for key, _ in items])
        self.log.extend(key for key, _ in items)

    def shared(self) -> SharedWriter:
        return SharedWriter(self.one, self.group, "test-writer")


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "test-writer"]


async def submit_and_leave(
    shared: SharedWriter, keys: list[str], error: BaseException | None = None
) -> None:
    async with shared.session() as session:
        for key in keys:
            session.submit(((key, b"x"),))
        if error is not None:
            raise error


async def held(disk: Disk) -> None:
    """Until the writer thread has taken a job and waits at the gate."""
    with anyio.fail_after(10):
        while not disk.entered.is_set():
            await anyio.sleep(0.001)


async def test_jobs_land_in_submission_order_on_one_thread() -> None:
    disk = Disk()
    async with disk.shared().session() as session:
        tickets = [session.submit(((f"k{i}", b"x"),)) for i in range(50)]
        for ticket in tickets:
            await session.wait(ticket)
    assert disk.log == [f"k{i}" for i in range(50)]
    assert disk.threads == {"test-writer"}


async def test_jobs_queued_while_busy_are_written_as_one_group() -> None:
    disk = Disk()
    disk.gate.clear()
    async with disk.shared().session() as session:
        first = session.submit((("a", b"x"),))
        await held(disk)  # the thread holds "a" at the gate
        rest = [session.submit(((key, b"x"),)) for key in "bcd"]
        disk.gate.set()
        await session.wait(first)
        for ticket in rest:
            await session.wait(ticket)
    assert disk.groups == [["a"], ["b", "c", "d"]]


async def test_a_write_error_is_raised_by_the_wait_naming_the_key() -> None:
    disk = Disk()
    disk.fail_on = "k1"
    async with disk.shared().session() as session:
        await session.wait(session.submit((("k0", b"x"),)))
        bad = session.submit((("k1", b"x"),))
        with pytest.raises(StorageError, match="'k1'"):
            await session.wait(bad)
        session.check()  # raised to its waiter: not raised twice


async def test_an_error_nobody_waited_for_fails_the_session_at_its_end() -> None:
    disk = Disk()
    disk.fail_on = "k1"
    with pytest.raises(StorageError, match="'k1'"):
        await submit_and_leave(disk.shared(), ["k0", "k1"])
    assert "k1" not in disk.log


async def test_a_failed_group_is_retried_job_by_job_so_only_the_bad_record_fails() -> None:
    """One bad record (maybe another run's) does not fail the records grouped with it."""
    disk = Disk()
    disk.fail_on = "b"
    disk.gate.clear()
    async with disk.shared().session() as session:
        first = session.submit((("a", b"x"),))
        await held(disk)
        tickets = {key: session.submit(((key, b"x"),)) for key in "bcd"}
        disk.gate.set()
        await session.wait(first)
        with pytest.raises(StorageError, match="'b'"):
            await session.wait(tickets["b"])
        await session.wait(tickets["c"])
        await session.wait(tickets["d"])
    assert disk.log == ["a", "c", "d"]
    assert disk.groups == [["a"], ["c"], ["d"]]


async def test_an_unwaited_error_is_raised_by_check_once_settled() -> None:
    disk = Disk()
    disk.fail_on = "k0"
    raised: list[BaseException] = []

    async def body() -> None:
        async with disk.shared().session() as session:
            ticket = session.submit((("k0", b"x"),))
            await session.settle(ticket)
            try:
                session.check()
            except StorageError as exc:
                raised.append(exc)

    with pytest.raises(StorageError, match="'k0'"):
        await body()
    assert len(raised) == 1


async def test_the_body_error_wins_but_the_writes_still_finish() -> None:
    disk = Disk(delay=0.05)
    with pytest.raises(KeyError):
        await submit_and_leave(disk.shared(), ["k0"], KeyError("body"))
    assert disk.log == ["k0"]


async def test_a_cancelled_session_ends_only_after_its_writes_landed() -> None:
    disk = Disk(delay=0.1)
    with anyio.move_on_after(0.02) as scope:
        async with disk.shared().session() as session:
            session.submit((("k0", b"x"),))
            session.submit((("k1", b"x"),))
            await anyio.sleep(10)
    assert scope.cancelled_caught
    assert disk.log == ["k0", "k1"]  # nothing lands after the session said it ended
    time.sleep(0.05)
    assert disk.log == ["k0", "k1"]


async def test_the_loop_is_woken_only_for_a_ticket_being_waited_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wakes = 0
    original = writer_module.call_soon_threadsafe

    def counting() -> Any:
        call = original()

        def wake(callback: Any) -> Any:
            nonlocal wakes
            wakes += 1
            return call(callback)

        return wake

    monkeypatch.setattr(writer_module, "call_soon_threadsafe", counting)
    disk = Disk()
    async with disk.shared().session() as session:
        ticket = session.submit((("k0", b"x"),))
        while not ticket.done:
            await anyio.sleep(0.01)
        assert wakes == 0  # finished while nobody waited: the loop was left alone
        disk.gate.clear()
        ticket = session.submit((("k1", b"x"),))
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(session.wait, ticket)
                while not ticket._wakes:  # the waiter has asked to be woken
                    await anyio.sleep(0.001)
                disk.gate.set()
        assert wakes == 1


async def test_every_task_waiting_on_a_ticket_is_woken() -> None:
    """A commit and the end of the run may wait on the same record."""
    disk = Disk()
    disk.gate.clear()
    woken: list[int] = []
    async with disk.shared().session() as session:
        ticket = session.submit((("k0", b"x"),))

        async def waiter(i: int) -> None:
            await session.settle(ticket)
            woken.append(i)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for i in range(3):
                    group.start_soon(waiter, i)
                while len(ticket._wakes) < 3:
                    await anyio.sleep(0.001)
                disk.gate.set()
    assert sorted(woken) == [0, 1, 2]


async def test_no_thread_is_left_after_the_last_session() -> None:
    disk = Disk(delay=0.01)
    shared = disk.shared()
    assert writer_threads() == []
    async with shared.session() as first:
        async with shared.session() as second:
            first.submit((("a", b"x"),))
            second.submit((("b", b"x"),))
            assert len(writer_threads()) == 1  # one thread for both runs
        assert len(writer_threads()) == 1
    assert writer_threads() == []
    async with shared.session() as again:  # started anew for the next run
        await again.wait(again.submit((("c", b"x"),)))
    assert writer_threads() == []
    assert sorted(disk.log) == ["a", "b", "c"]


async def test_the_writer_thread_is_not_a_daemon() -> None:
    disk = Disk()
    disk.gate.clear()
    async with disk.shared().session() as session:
        session.submit((("k0", b"x"),))
        (thread,) = writer_threads()
        assert not thread.daemon  # interpreter exit waits for acknowledged writes
        disk.gate.set()


_FORK_WHILE_LOCKED = """
import asyncio, os, sys, threading
from asyncflow import AsyncFlow, Config, action
from asyncflow.providers import StorageFile

@action
async def one(previous_context):
    return 1

async def run(storage, workflow_id):
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)
    flow.task.add(one)
    await flow.start()
    return flow.status

storage = StorageFile(sys.argv[1])
assert asyncio.run(run(storage, "parent")) == "completed"
held, release = threading.Event(), threading.Event()

def hold():
    with storage._writer._lock:
        held.set()
        release.wait()

threading.Thread(target=hold).start()
held.wait()
pid = os.fork()
if pid == 0:
    os._exit(0 if asyncio.run(run(storage, "child")) == "completed" else 3)
release.set()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_another_thread_held_the_writer_lock_still_writes(
    tmp_path: Path,
) -> None:
    """``os.fork`` copies a held lock locked; the child starts its writer afresh."""
    process = subprocess.Popen(
        [sys.executable, "-c", _FORK_WHILE_LOCKED, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a hung child is killed with its parent below
    )
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, stderr
    assert (tmp_path / "child" / "tasks").is_dir()
