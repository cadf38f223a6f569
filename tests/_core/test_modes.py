"""Parallel mode's scheduling: unbounded really starts every task, and lazily."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow._core.modes import _SPAWN_BATCH
from asyncflow.providers import StorageDefault

pytestmark = pytest.mark.anyio


def make_flow() -> AsyncFlow:
    return AsyncFlow(config=Config(storage=StorageDefault()), workflow_id="modes")


async def test_unbounded_parallel_has_every_task_in_flight_at_once() -> None:
    """Each task waits until all have started: it can only finish if none waits its turn."""
    count = 3 * _SPAWN_BATCH + 5
    started = 0
    everyone = anyio.Event()

    @action
    async def meet(initial_context: Context) -> int:
        nonlocal started
        started += 1
        if started == count:
            everyone.set()
        await everyone.wait()
        value: int = initial_context.storage
        return value

    flow = make_flow()
    for i in range(count):
        flow.task.add(meet, initial_context=i)
    with anyio.fail_after(10):
        await flow.start(mode="parallel")
    assert flow.result_storage() == list(range(count))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_unbounded_parallel_keeps_workers_for_tasks_in_flight_only() -> None:
    """Tasks that never suspend do not each park an event-loop task of their own."""
    peak = 0

    @action
    async def trivial(initial_context: Context) -> int:
        nonlocal peak
        peak = max(peak, len(asyncio.all_tasks()))
        value: int = initial_context.storage
        return value

    count = 20 * _SPAWN_BATCH
    flow = make_flow()
    for i in range(count):
        flow.task.add(trivial, initial_context=i)
    await flow.start(mode="parallel")
    assert flow.result_storage() == list(range(count))
    assert peak <= 3 * _SPAWN_BATCH


async def test_bounded_parallel_never_exceeds_the_limit() -> None:
    active = peak = 0

    @action
    async def slow() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.001)
        active -= 1

    flow = make_flow()
    for _ in range(40):
        flow.task.add(slow)
    await flow.start(mode="parallel", max_concurrency=7)
    assert peak == 7


async def test_unbounded_parallel_stops_starting_tasks_after_a_failure() -> None:
    ran: list[int] = []

    @action
    async def work(initial_context: Context) -> None:
        value: int = initial_context.storage
        ran.append(value)
        if value == 3:
            raise RuntimeError("boom")

    flow = make_flow()
    for i in range(10 * _SPAWN_BATCH):
        flow.task.add(work, initial_context=i)
    await flow.start(mode="parallel", keep_going=False)
    assert 3 in ran
    assert len(ran) < 10 * _SPAWN_BATCH
    statuses = {task.status.value for task in flow.task.queue}
    assert "Not started" in statuses
