"""``Config(durability=...)``: what each mode promises, and what a crash can cost.

* ``sync``: durable before the next step;
* ``async``: the next step overlaps the write, writes of a chain land in
  order, and everything is flushed when ``start()`` returns;
* ``batch``: tasks finishing together share one ``write_many``;
* in every mode a SIGKILL never leaves a torn record, and a resume re-runs
  exactly the steps that have no record.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncflow import AsyncFlow, Config, ConfigurationError, StorageError, action
from asyncflow._core.records import load_records
from asyncflow.providers import StorageDefault, StorageFile
from asyncflow.serializers import JSONSerializer

pytestmark = pytest.mark.anyio

FLOW = Path(__file__).parent / "flows" / "durable.py"


class SlowWrites(StorageDefault):
    """Task records take ``delay`` seconds to write; logs when each write starts and ends."""

    def __init__(self, log: list[str], delay: float = 0.05) -> None:
        super().__init__()
        self.log = log
        self.delay = delay
        self.fail_on: str | None = None

    async def write(self, key: str, data: bytes, **kwargs: Any) -> str:
        if "/tasks/" not in key:
            return await super().write(key, data, **kwargs)
        name = key.rsplit("/", 1)[1].removesuffix(".json")
        self.log.append(f"write {name} start")
        await anyio.sleep(self.delay)
        if self.fail_on == name:
            raise StorageError(f"disk full writing {name}")
        version = await super().write(key, data, **kwargs)
        self.log.append(f"write {name} end")
        return version


def chain(storage: Any, log: list[str], n: int, durability: str) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage, durability=durability), workflow_id="dur")
    for i in range(n):

        async def step(previous_context: Any, name: str = f"s{i}") -> str:
            log.append(f"run {name}")
            return name

        step.__qualname__ = f"s{i}"
        flow.task.add(step=action(step), key=f"s{i}")
    return flow


def test_unknown_durability_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="durability"):
        Config(durability="eventually")


async def test_sync_is_durable_before_the_next_step() -> None:
    log: list[str] = []
    storage = SlowWrites(log)
    await chain(storage, log, 3, "sync").start()
    assert log == [
        "run s0", "write s0 start", "write s0 end",
        "run s1", "write s1 start", "write s1 end",
        "run s2", "write s2 start", "write s2 end",
    ]  # fmt: skip


async def test_async_runs_the_next_step_while_the_checkpoint_is_written() -> None:
    log: list[str] = []
    storage = SlowWrites(log)
    flow = chain(storage, log, 3, "async")
    await flow.start()
    # s1 ran before s0's record was written: the write overlapped the step.
    assert log.index("run s1") < log.index("write s0 end")
    # One write in flight per chain, in order.
    ends = [entry for entry in log if entry.endswith(" end")]
    assert ends == ["write s0 end", "write s1 end", "write s2 end"]
    for i in range(2):
        assert log.index(f"write s{i} end") < log.index(f"write s{i + 1} start")
    # Everything is flushed when start() returns.
    assert [k async for k in storage.list("dur/tasks/")] == [
        "dur/tasks/s0.json",
        "dur/tasks/s1.json",
        "dur/tasks/s2.json",
    ]
    assert flow.status == "completed"


async def test_async_background_mode_is_flushed_by_wait() -> None:
    log: list[str] = []
    storage = SlowWrites(log)
    flow = chain(storage, log, 3, "async")
    await flow.start(mode="background")
    await flow.wait()
    assert sum(1 for entry in log if entry.endswith(" end")) == 3


async def test_async_write_failure_raises_from_start() -> None:
    log: list[str] = []
    storage = SlowWrites(log)
    storage.fail_on = "s1"
    flow = chain(storage, log, 4, "async")
    with pytest.raises(StorageError, match="disk full writing s1"):
        await flow.start()
    # The chain stopped at the next commit: s3 never wrote a record.
    assert "write s3 start" not in log


async def test_async_resume_skips_what_was_flushed(tmp_path: Path) -> None:
    log: list[str] = []
    storage = StorageFile(tmp_path / "store")
    await chain(storage, log, 5, "async").start(resume=True)
    log.clear()
    await chain(storage, log, 5, "async").start(resume=True)
    assert log == []


def logged_file(path: Path, log: list[str], delay: float = 0.05) -> StorageFile:
    """A ``StorageFile`` whose record writes (on its writer thread) are slow and logged."""
    storage = StorageFile(path)
    real = storage._write_sync
    storage.fail_on = None  # type: ignore[attr-defined]
    storage.threads = set()  # type: ignore[attr-defined]

    def write_sync(key: str, target: str, data: bytes, *args: Any) -> str:
        if "/tasks/" not in key:
            return real(key, target, data, *args)
        name = key.rsplit("/", 1)[1].removesuffix(".json")
        storage.threads.add(threading.current_thread().name)  # type: ignore[attr-defined]
        log.append(f"write {name} start")
        time.sleep(delay)
        if storage.fail_on == name:  # type: ignore[attr-defined]
            raise StorageError(f"file storage cannot write {key!r}: disk full")
        version = real(key, target, data, *args)
        log.append(f"write {name} end")
        return version

    storage._write_sync = write_sync  # type: ignore[method-assign]
    return storage


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asyncflow-writer")]


@pytest.mark.parametrize("durability", ["sync", "async", "batch"])
async def test_file_records_go_through_one_writer_thread_that_ends_with_the_run(
    tmp_path: Path, durability: str
) -> None:
    log: list[str] = []
    storage = logged_file(tmp_path / "store", log, delay=0.01)
    flow = chain(storage, log, 4, durability)
    await flow.start()
    assert flow.status == "completed"
    assert len(storage.threads) == 1  # type: ignore[attr-defined]
    assert next(iter(storage.threads)).startswith("asyncflow-writer")  # type: ignore[attr-defined]
    assert writer_threads() == []
    ends = [entry for entry in log if entry.endswith(" end")]
    assert ends == [f"write s{i} end" for i in range(4)]


async def test_file_async_overlaps_and_keeps_the_chain_in_order(tmp_path: Path) -> None:
    log: list[str] = []
    storage = logged_file(tmp_path / "store", log)
    flow = chain(storage, log, 3, "async")
    await flow.start()
    assert log.index("run s1") < log.index("write s0 end")
    for i in range(2):
        # one write in flight per chain: the next starts after the previous ended
        assert log.index(f"write s{i} end") < log.index(f"write s{i + 1} start")
    assert [k async for k in storage.list("dur/tasks/")] == [
        "dur/tasks/s0.json",
        "dur/tasks/s1.json",
        "dur/tasks/s2.json",
    ]


@pytest.mark.parametrize("durability", ["sync", "async", "batch"])
async def test_file_writer_error_fails_the_run_naming_the_key(
    tmp_path: Path, durability: str
) -> None:
    log: list[str] = []
    storage = logged_file(tmp_path / "store", log, delay=0.01)
    storage.fail_on = "s1"  # type: ignore[attr-defined]
    flow = chain(storage, log, 4, durability)
    with pytest.raises(StorageError, match=r"dur/tasks/s1\.json"):
        await flow.start()
    assert "write s3 start" not in log
    assert writer_threads() == []


async def test_file_async_error_of_the_last_write_fails_the_run(tmp_path: Path) -> None:
    """Nobody commits after the last step: the end of the run raises its error."""
    log: list[str] = []
    storage = logged_file(tmp_path / "store", log, delay=0.01)
    storage.fail_on = "s2"  # type: ignore[attr-defined]
    flow = chain(storage, log, 3, "async")
    with pytest.raises(StorageError, match=r"dur/tasks/s2\.json"):
        await flow.start()
    assert flow.status == "failed"


@pytest.mark.parametrize("durability", ["sync", "async", "batch"])
async def test_file_cancelled_run_ends_after_its_writes_and_nothing_lands_later(
    tmp_path: Path, durability: str
) -> None:
    log: list[str] = []
    storage = logged_file(tmp_path / "store", log, delay=0.05)
    flow = chain(storage, log, 50, durability)
    with anyio.move_on_after(0.2) as scope:
        await flow.start()
    assert scope.cancelled_caught
    assert flow.status == "cancelled"
    started = [e.split()[1] for e in log if e.endswith(" start")]
    ended = [e.split()[1] for e in log if e.endswith(" end")]
    assert started == ended  # every write begun has landed before start() returned
    assert writer_threads() == []
    before = list(log)
    await anyio.sleep(0.15)
    assert log == before
    on_disk = [k.rsplit("/", 1)[1] async for k in storage.list("dur/tasks/")]
    assert on_disk == sorted(f"{name}.json" for name in ended)


class CountingFile(StorageFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.single = 0

    async def write_many(self, items: list[tuple[str, bytes]]) -> list[str]:
        self.batches.append(len(items))
        await anyio.sleep(0.01)  # a slow disk: completions pile up meanwhile
        return await super().write_many(items)

    async def write(self, key: str, data: bytes, **kwargs: Any) -> str:
        if "/tasks/" in key:
            self.single += 1
        return await super().write(key, data, **kwargs)


async def test_batch_shares_write_many_calls_in_parallel_mode(tmp_path: Path) -> None:
    storage = CountingFile(tmp_path / "store")
    n = 60
    flow = AsyncFlow(config=Config(storage=storage, durability="batch"), workflow_id="dur")

    @action
    async def task() -> int:
        await anyio.sleep(0.001)
        return 1

    for i in range(n):
        flow.task.add(step=task, key=f"t{i}")
    await flow.start(mode="parallel")
    assert flow.status == "completed"
    assert sum(storage.batches) + storage.single == n
    assert len(storage.batches) + storage.single < n / 2
    assert max(storage.batches) > 1
    records = await load_records(
        storage, "dur", [f"t{i}" for i in range(n)], serializers={"json": JSONSerializer()}
    )
    assert len(records) == n


async def test_batch_waits_for_tasks_finishing_together(tmp_path: Path) -> None:
    """Workers that finish in the same turns share one flush: no batch of one."""
    storage = CountingFile(tmp_path / "store")
    flow = AsyncFlow(config=Config(storage=storage, durability="batch"), workflow_id="dur")

    @action
    async def task() -> int:
        return 1

    for i in range(64):
        flow.task.add(step=task, key=f"t{i}")
    await flow.start(mode="parallel", max_concurrency=8)
    assert flow.status == "completed"
    assert storage.single == 0
    assert storage.batches == [8] * 8


async def test_batch_without_write_many_writes_concurrently() -> None:
    log: list[str] = []
    storage = SlowWrites(log, delay=0.02)
    flow = AsyncFlow(config=Config(storage=storage, durability="batch"), workflow_id="dur")

    @action
    async def task() -> int:
        return 1

    for i in range(20):
        flow.task.add(step=task, key=f"t{i}")
    started = time.perf_counter()
    await flow.start(mode="parallel")
    assert flow.status == "completed"
    assert time.perf_counter() - started < 20 * 0.02  # not one write after another
    assert sum(1 for entry in log if entry.endswith(" end")) == 20


async def test_batch_lease_is_checked_before_each_batch() -> None:
    storage = StorageDefault()
    flow = AsyncFlow(config=Config(storage=storage, durability="batch"), workflow_id="dur")
    checks = 0

    @action
    async def task() -> int:
        return 1

    for i in range(5):
        flow.task.add(step=task, key=f"t{i}")

    from asyncflow._kernel import lease as lease_module

    original = lease_module.Lease.ensure

    def counting(self: Any) -> None:
        nonlocal checks
        checks += 1
        original(self)

    lease_module.Lease.ensure = counting  # type: ignore[method-assign]
    try:
        await flow.start(mode="parallel")
    finally:
        lease_module.Lease.ensure = original  # type: ignore[method-assign]
    assert checks >= 2  # at least one batch, plus the manifest at the end


# -- crashes: a real SIGKILL in a child process ------------------------------------------


def _ran(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith("ran ")]


@pytest.mark.parametrize(
    ("mode", "durability"),
    [
        ("sequential", "sync"),
        ("sequential", "async"),
        ("sequential", "batch"),
        ("parallel", "batch"),
        ("parallel", "async"),
    ],
)
@pytest.mark.parametrize("anyio_backend", [pytest.param(("asyncio", {}), id="asyncio")])
async def test_sigkill_never_tears_a_record_and_resume_reruns_only_the_missing(
    tmp_path: Path, mode: str, durability: str
) -> None:
    store, log = tmp_path / "store", tmp_path / "calls.log"
    n = 400
    argv = [sys.executable, str(FLOW), str(store), str(log), mode, durability, str(n)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(_ran(log)) < 60 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, "the flow finished before it was killed"
    first = _ran(log)
    assert len(first) < n

    # Every record left behind decodes whole: none is torn.
    keys = [f"k{i:04d}" for i in range(n)]
    storage = StorageFile(store)
    records = await load_records(storage, "durable", keys, serializers={"json": JSONSerializer()})
    assert records, "nothing was committed before the kill"
    for key, record in records.items():
        assert record.output == {"key": key, "blob": "x" * 2000}
    if mode == "sequential":
        # Writes of a chain land in order: the records are a prefix of the chain.
        assert sorted(records) == keys[: len(records)]
    # What the kill lost, beyond what never started: the running steps, plus
    # for async one write in flight per chain (16 workers in parallel mode).
    chains = 1 if mode == "sequential" else 16
    allowed = chains * (2 if durability == "async" else 1)
    lost = set(first) - set(records)
    assert len(lost) <= allowed, (durability, sorted(lost))

    # Resume (in sync mode) re-runs exactly the steps without a record.
    log.unlink()
    argv[5] = "sync"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "statuses Completed" in done.stdout
    assert sorted(_ran(log)) == sorted(set(keys) - set(records))
