"""Retries, timeouts and backoff: attempts are counted as in Dotflow, waits never block."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from asyncflow import AsyncFlow, Config, TaskStatus, TaskTimeout, action
from asyncflow.providers import Storage

pytestmark = pytest.mark.anyio


def flow_of(storage: Storage, step: Any) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="retry-wf")
    flow.task.add(step=step)
    return flow


@pytest.mark.parametrize(("retry", "attempts"), [(0, 1), (1, 1), (3, 3)])
async def test_retry_is_total_attempts(storage: Storage, retry: int, attempts: int) -> None:
    tries = 0

    @action(retry=retry)
    async def flaky() -> None:
        nonlocal tries
        tries += 1
        raise ValueError(tries)

    flow = flow_of(storage, flaky)
    await flow.start()
    task = flow.result_task()[0]
    assert tries == attempts
    assert task.attempts == attempts
    assert task.status is TaskStatus.FAILED
    assert [e.args for e in task.errors] == [(i,) for i in range(1, attempts + 1)]


async def test_succeeds_on_a_later_attempt_and_records_attempts(storage: Storage) -> None:
    tries = 0

    @action(retry=4)
    def flaky() -> str:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionError("transient")
        return "ok"

    flow = flow_of(storage, flaky)
    stream = flow.events()
    await flow.start(resume=True)
    assert flow.result_storage() == ["ok"]
    assert flow.result_task()[0].attempts == 3
    retrying = [e for e in [e async for e in stream] if type(e).__name__ == "TaskRetrying"]
    assert [e.attempt for e in retrying] == [1, 2]  # type: ignore[attr-defined]
    restored = flow_of(storage, flaky)
    await restored.start(resume=True)
    assert restored.result_task()[0].attempts == 3  # read back from the record


async def test_backoff_delays_and_the_loop_stays_free(storage: Storage) -> None:
    tries = 0

    @action(retry=3, retry_delay=0.05, backoff=True)
    async def flaky() -> int:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ValueError
        return tries

    ticks = 0
    flow = flow_of(storage, flaky)
    stream = flow.events()

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.005)
            ticks += 1

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        started = anyio.current_time()
        await flow.start()
        elapsed = anyio.current_time() - started
        group.cancel_scope.cancel()
    delays = [e.delay async for e in stream if type(e).__name__ == "TaskRetrying"]  # type: ignore[attr-defined]
    assert delays == [0.05, 0.1]
    assert elapsed >= 0.15
    assert ticks >= 5  # other tasks ran while the step waited to retry


async def test_timeout_cancels_the_attempt_and_counts_as_failed(storage: Storage) -> None:
    finished: list[str] = []
    attempts = 0

    @action(retry=2, timeout=0.05)
    async def slow() -> None:
        nonlocal attempts
        attempts += 1
        try:
            await anyio.sleep_forever()
        finally:
            finished.append("cancelled")

    flow = flow_of(storage, slow)
    with anyio.fail_after(5):
        await flow.start()
    task = flow.result_task()[0]
    assert attempts == 2
    assert finished == ["cancelled", "cancelled"]  # no attempt is left running
    assert task.status is TaskStatus.FAILED
    assert isinstance(task.error, TaskTimeout)
    assert "slow" in str(task.error)
    assert [k async for k in storage.list("retry-wf/tasks/")] == []


async def test_timeout_then_success(storage: Storage) -> None:
    attempts = 0

    @action(retry=2, timeout=0.05)
    async def sometimes_slow() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await anyio.sleep_forever()
        return "fast"

    flow = flow_of(storage, sometimes_slow)
    await flow.start()
    assert flow.result_storage() == ["fast"]
    assert isinstance(flow.result_task()[0].errors[0], TaskTimeout)


async def test_raise_on_failure_raises_task_timeout(storage: Storage) -> None:
    @action(timeout=0.01)
    async def slow() -> None:
        await anyio.sleep_forever()

    with pytest.raises(TaskTimeout):
        await flow_of(storage, slow).start(raise_on_failure=True)


async def test_sync_step_runs_in_a_worker_thread(storage: Storage) -> None:
    @action
    def where() -> bool:
        return threading.current_thread() is threading.main_thread()

    @action
    async def where_async() -> bool:
        return threading.current_thread() is threading.main_thread()

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="threads")
    flow.task.add(step=where)
    flow.task.add(step=where_async)
    await flow.start()
    assert flow.result_storage() == [False, True]


async def test_sync_attempts_never_overlap_after_a_timeout(storage: Storage) -> None:
    spans: list[tuple[str, float]] = []
    lock = threading.Lock()
    attempts = 0

    @action(retry=2, timeout=0.05)
    def slow_then_fast() -> str:
        nonlocal attempts
        with lock:
            attempts += 1
            number = attempts
            spans.append((f"start{number}", time.monotonic()))
        if number == 1:
            time.sleep(0.3)  # cannot be interrupted: the thread runs on
        with lock:
            spans.append((f"end{number}", time.monotonic()))
        return f"attempt {number}"

    flow = flow_of(storage, slow_then_fast)
    await flow.start()
    assert flow.result_storage() == ["attempt 2"]
    order = [name for name, _ in sorted(spans, key=lambda span: span[1])]
    assert order == ["start1", "end1", "start2", "end2"]
    assert isinstance(flow.result_task()[0].errors[0], TaskTimeout)


async def test_last_sync_attempt_that_times_out_is_abandoned(storage: Storage) -> None:
    release = threading.Event()

    @action(timeout=0.05)
    def hangs() -> None:
        release.wait(10)

    flow = flow_of(storage, hangs)
    started = time.monotonic()
    await flow.start()
    assert time.monotonic() - started < 5
    release.set()
    assert isinstance(flow.result_task()[0].error, TaskTimeout)


def test_backoff_delay_is_computed_lazily_and_stays_finite() -> None:
    @action(retry=10**9, retry_delay=1.0, backoff=True)
    async def many() -> None: ...

    assert many.delay(1) == 1.0
    assert many.delay(3) == 4.0
    assert many.delay(10**8) == 2.0**64  # finite, and no list of 10**9 delays is built
