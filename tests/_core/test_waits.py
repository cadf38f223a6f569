"""Durable waits in one process, on every storage backend, driven by a manual clock."""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

import anyio
import pytest

import asyncflow
from asyncflow import (
    AsyncFlow,
    Config,
    ConfigurationError,
    Context,
    PreconditionFailed,
    SerializationError,
    TaskStatus,
    TaskTimeout,
    action,
    events,
    wait,
)
from asyncflow._core.records import clear_workflow
from asyncflow.providers import Storage
from asyncflow.schedule import ManualClock

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
START = dt.datetime(2030, 1, 1, tzinfo=UTC)


class Log:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.inputs: dict[str, Any] = {}

    def step(self, name: str) -> Any:
        async def body(previous_context: Context) -> Any:
            self.calls.append(name)
            self.inputs[name] = previous_context.storage
            return name

        body.__qualname__ = name
        return action(body)


def build(
    storage: Storage,
    clock: ManualClock,
    log: Log,
    steps: list[Any],
    wid: str = "w",
    poll: float = 0.05,
) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage, clock=clock, signal_poll=poll), workflow_id=wid)
    for step in steps:
        flow.task.add(step=log.step(step) if isinstance(step, str) else step)
    return flow


async def manifest(storage: Storage, wid: str = "w") -> dict[str, Any]:
    blob = await storage.read(f"{wid}/run.json")
    assert blob is not None
    result: dict[str, Any] = json.loads(blob.data)
    return result


async def test_sleep_parks_keeps_its_wake_time_and_completes_when_due(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    wake = (START + dt.timedelta(seconds=60)).timestamp()

    def flow() -> AsyncFlow:
        return build(storage, clock, log, ["a", wait.sleep(60), "b"])

    first = await flow().start(resume=True, on_wait="park")
    assert first.status == "waiting"
    assert [t.status for t in first.result_task()] == [
        TaskStatus.COMPLETED,
        TaskStatus.WAITING,
        TaskStatus.NOT_STARTED,
    ]
    run = await manifest(storage)
    assert run["status"] == "waiting"
    assert run["due_at"] == wake
    assert run["waiting"]["wait.sleep"]["kind"] == "sleep"
    assert run["waiting"]["wait.sleep"]["wake_at"] == wake
    assert run["outcomes"]["wait.sleep"] == "waiting"
    await clock.advance(seconds=59)
    again = await flow().start(resume=True, on_wait="park")  # not due: parks again, same time
    assert again.status == "waiting"
    assert (await manifest(storage))["due_at"] == wake
    await clock.advance(seconds=1)
    done = await flow().start(resume=True, on_wait="park")
    assert done.status == "completed"
    assert log.calls == ["a", "b"]
    assert log.inputs["b"] == dt.datetime.fromtimestamp(wake, UTC)
    assert "waiting" not in await manifest(storage)


async def test_sleep_blocks_in_process_until_the_clock_reaches_it(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    flow = build(storage, clock, log, [wait.sleep(dt.timedelta(minutes=5)), "b"])
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        with anyio.fail_after(10):
            while clock.sleepers == 0:
                await anyio.sleep(0.01)
        assert log.calls == []
        await clock.advance(minutes=5)
    assert flow.status == "completed"
    assert log.inputs["b"] == START + dt.timedelta(minutes=5)


async def test_until_waits_for_an_absolute_time(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    when = START + dt.timedelta(hours=2)
    flow = build(storage, clock, log, [wait.until(when), "b"])
    assert (await flow.start(resume=True, on_wait="park")).status == "waiting"
    assert (await manifest(storage))["due_at"] == when.timestamp()
    await clock.set(when)
    flow = build(storage, clock, log, [wait.until(when), "b"])
    assert (await flow.start(resume=True, on_wait="park")).status == "completed"
    assert log.inputs["b"] == when


async def test_signal_parks_then_resume_completes_with_the_payload(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()

    def flow() -> AsyncFlow:
        return build(storage, clock, log, ["a", wait.signal("approval"), "b"])

    assert (await flow().start(resume=True, on_wait="park")).status == "waiting"
    run = await manifest(storage)
    assert run["waiting"]["wait.signal.approval"]["signal"] == "approval"
    assert run["due_at"] is None
    await asyncflow.signal(storage, "w", "approval", {"by": "alice", "at": START})
    done = await flow().start(resume=True, on_wait="park")
    assert done.status == "completed"
    assert log.calls == ["a", "b"]
    assert log.inputs["b"] == {"by": "alice", "at": START}
    # completed: from now on the wait is restored from its checkpoint like any step
    again = await flow().start(resume=True, on_wait="park")
    assert again.result_task()[1].restored
    assert log.calls == ["a", "b"]


async def test_signal_sent_in_process_wakes_a_blocked_run_at_once(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    flow = build(storage, clock, log, [wait.signal("go"), "b"], poll=3600)
    stream = flow.events()
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        async for event in stream:
            if isinstance(event, events.TaskWaiting):
                assert event.wait == "signal"
                assert event.signal == "go"
                assert not event.parked
                break
        with anyio.fail_after(5):  # the poll is an hour: only the in-process wake-up is this fast
            await asyncflow.signal(storage, "w", "go", [1, 2])
            while flow.status != "completed":
                await anyio.sleep(0.01)
    assert log.inputs["b"] == [1, 2]


async def test_signal_timeout_fails_the_step_with_task_timeout(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    flow = build(storage, clock, log, [wait.signal("late", timeout=30), "b"], poll=3600)
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        with anyio.fail_after(10):
            while clock.sleepers == 0:
                await anyio.sleep(0.01)
        await clock.advance(seconds=30)
    task = flow.result_task()[0]
    assert flow.status == "failed"
    assert task.status is TaskStatus.FAILED
    assert isinstance(task.error, TaskTimeout)
    assert log.calls == []


async def test_parked_signal_with_timeout_is_due_at_its_deadline(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()

    def flow() -> AsyncFlow:
        return build(storage, clock, log, [wait.signal("s", timeout=60), "b"])

    await flow().start(resume=True, on_wait="park")
    assert (await manifest(storage))["due_at"] == START.timestamp() + 60
    await clock.advance(seconds=61)
    late = await flow().start(resume=True, on_wait="park")
    assert late.status == "failed"
    assert isinstance(late.result_task()[0].error, TaskTimeout)


async def test_cancelled_during_a_wait_the_wait_stays_armed(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    flow = build(storage, clock, log, ["a", wait.sleep(100), "b"])
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start, "sequential")
        with anyio.fail_after(10):
            while clock.sleepers == 0:
                await anyio.sleep(0.01)
        await clock.advance(seconds=40)
        flow.cancel()
    assert flow.status == "cancelled"
    assert flow.result_task()[1].status is TaskStatus.CANCELLED
    # resumed later: the wake time is the one armed before the cancel, not re-armed
    again = build(storage, clock, log, ["a", wait.sleep(100), "b"])
    await again.start(resume=True, on_wait="park")
    assert again.status == "waiting"
    assert (await manifest(storage))["due_at"] == START.timestamp() + 100
    await clock.advance(seconds=60)
    done = build(storage, clock, log, ["a", wait.sleep(100), "b"])
    assert (await done.start(resume=True, on_wait="park")).status == "completed"
    assert log.calls == ["a", "b"]


async def test_parallel_and_groups_keep_running_until_only_waits_remain(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    flow = build(storage, clock, log, ["a", wait.signal("s"), "b", "c"])
    await flow.start(mode="parallel", on_wait="park")
    assert flow.status == "waiting"
    assert sorted(log.calls) == ["a", "b", "c"]

    grouped = AsyncFlow(config=Config(storage=storage, clock=clock), workflow_id="g")
    grouped.task.add(step=log.step("g1a"), group_name="one")
    grouped.task.add(step=wait.sleep(10), group_name="one")
    grouped.task.add(step=log.step("g1b"), group_name="one")
    grouped.task.add(step=log.step("g2a"), group_name="two")
    grouped.task.add(step=log.step("g2b"), group_name="two")
    await grouped.start(mode="sequential_group", on_wait="park", keep_going=True)
    assert grouped.status == "waiting"
    assert "g1b" not in log.calls
    assert {"g1a", "g2a", "g2b"} <= set(log.calls)


async def test_graph_mode_parks_only_the_dependents_of_a_wait(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    flow = AsyncFlow(config=Config(storage=storage, clock=clock), workflow_id="dag")
    flow.task.add(step=log.step("root"))
    flow.task.add(step=wait.signal("ok"), depends_on="root")
    flow.task.add(step=log.step("gated"), depends_on="wait.signal.ok")
    flow.task.add(step=log.step("free"), depends_on="root")
    flow.task.add(step=log.step("later"), depends_on="free")
    await flow.start(mode="graph", resume=True, on_wait="park")
    assert flow.status == "waiting"
    assert sorted(log.calls) == ["free", "later", "root"]  # only the wait's dependent waits
    await asyncflow.signal(storage, "dag", "ok", "yes")
    again = AsyncFlow(config=Config(storage=storage, clock=clock), workflow_id="dag")
    for task in flow.task.queue:
        again.task.add(step=task.step, key=task.key, depends_on=list(task.depends_on))
    await again.start(mode="graph", resume=True, on_wait="park")
    assert again.status == "completed"
    assert sorted(log.calls) == ["free", "gated", "later", "root"]
    assert log.inputs["gated"] == "yes"


async def test_a_fresh_start_forgets_armed_waits_and_signals(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    await build(storage, clock, log, [wait.signal("s"), "b"]).start(on_wait="park")
    await asyncflow.signal(storage, "w", "s", 1)
    await clock.advance(seconds=5)
    fresh = await build(storage, clock, log, [wait.signal("s"), "b"]).start(on_wait="park")
    assert fresh.status == "waiting"  # the old signal belonged to the old run
    assert (await manifest(storage))["waiting"]["wait.signal.s"][
        "armed_at"
    ] == START.timestamp() + 5


async def test_signal_errors_are_clear(storage: Storage) -> None:
    await asyncflow.signal(storage, "w", "once", {"n": 1}, before_start=True)
    with pytest.raises(PreconditionFailed, match="already sent"):
        await asyncflow.signal(storage, "w", "once", {"n": 2}, before_start=True)
    with pytest.raises(ConfigurationError, match="signal name"):
        await asyncflow.signal(storage, "w", "../x")
    with pytest.raises(ConfigurationError, match="workflow_id"):
        await asyncflow.signal(storage, "a/b", "x")
    with pytest.raises(SerializationError, match="signal 'x'"):
        await asyncflow.signal(storage, "w", "x", object())
    assert await storage.read("w/signals/x.json") is None


def test_wait_steps_refuse_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        wait.until(dt.datetime(2030, 1, 1))
    with pytest.raises(ConfigurationError, match=">= 0"):
        wait.sleep(-1)
    with pytest.raises(ConfigurationError, match="seconds"):
        wait.sleep("1h")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="signal name"):
        wait.signal("no/slash")
    with pytest.raises(ConfigurationError, match="on_wait"):
        anyio.run(functools.partial(AsyncFlow().start, on_wait="later"))  # type: ignore[arg-type]


async def test_clearing_a_workflow_deletes_its_waits_and_signals_only(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    await build(storage, clock, log, [wait.signal("s"), "b"]).start(on_wait="park")
    await asyncflow.signal(storage, "w", "s", 1)
    await storage.write("w/waits/notes.txt", b"not ours")
    assert await storage.read("w/waits/wait.signal.s.json") is not None
    await clear_workflow(storage, "w")
    left = [key async for key in storage.list("w/")]
    assert left == ["w/lease.json", "w/waits/notes.txt"]
