"""``Worker``: finds parked runs of its flow, resumes the due ones once, reads no task record."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import asyncflow
from asyncflow import (
    AsyncFlow,
    Config,
    ConfigurationError,
    Context,
    StorageUnavailable,
    Worker,
    action,
    wait,
)
from asyncflow._core.worker import list_workflows
from asyncflow._kernel.capabilities import list_children
from asyncflow.providers import Storage, StorageDefault
from asyncflow.schedule import ManualClock
from tests.counting import CountingStorage

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
START = dt.datetime(2030, 1, 1, tzinfo=UTC)


class Calls:
    def __init__(self) -> None:
        self.log: list[str] = []

    def flow(self, storage: Storage, clock: ManualClock, wid: str, first: Any) -> AsyncFlow:
        """``first`` (a wait) then ``after``, which logs which workflow ran it."""

        async def after(previous_context: Context) -> Any:
            self.log.append(wid)
            await anyio.sleep(0.01)
            return previous_context.storage

        flow = AsyncFlow(config=Config(storage=storage, clock=clock), workflow_id=wid)
        flow.task.add(step=first, key="wait")
        flow.task.add(step=action(after), key="after")
        return flow


async def park(calls: Calls, storage: Storage, clock: ManualClock, wid: str, first: Any) -> None:
    flow = calls.flow(storage, clock, wid, first)
    await flow.start(resume=True, on_wait="park")
    assert flow.status == "waiting"


async def test_worker_resumes_only_due_runs_of_its_flow(storage: Storage) -> None:
    clock, calls = ManualClock(START), Calls()
    await park(calls, storage, clock, "job-sleep", wait.sleep(60))
    await park(calls, storage, clock, "job-quiet", wait.signal("go"))
    await park(calls, storage, clock, "job-sent", wait.signal("go"))
    await park(calls, storage, clock, "other-sent", wait.signal("go"))  # outside the prefix
    foreign = AsyncFlow(config=Config(storage=storage, clock=clock), workflow_id="job-foreign")
    foreign.task.add(step=wait.signal("go"), key="elsewhere")
    await foreign.start(on_wait="park")  # another flow's run: other keys
    for wid in ("job-sent", "other-sent", "job-foreign"):
        await asyncflow.signal(storage, wid, "go", {"to": wid})

    def make(wid: str) -> AsyncFlow:
        return calls.flow(
            storage, clock, wid, wait.sleep(60) if "sleep" in wid else wait.signal("go")
        )

    worker = Worker(make, storage=storage, prefix="job-", clock=clock)
    scanned = {p.workflow_id for p in await worker.scan()}
    assert scanned == {"job-sleep", "job-quiet", "job-sent", "job-foreign"}
    assert await worker.run_once() == ["job-sent"]
    assert calls.log == ["job-sent"]
    assert await worker.run_once() == []  # nothing else is due
    await clock.advance(seconds=60)
    assert await worker.run_once() == ["job-sleep"]
    assert calls.log == ["job-sent", "job-sleep"]
    assert {p.workflow_id for p in await worker.scan()} == {"job-quiet", "job-foreign"}


async def test_a_template_flow_is_copied_per_run(storage: Storage) -> None:
    clock, calls = ManualClock(START), Calls()
    for n in range(3):
        await park(calls, storage, clock, f"t{n}", wait.signal("go"))
        await asyncflow.signal(storage, f"t{n}", "go", n)
    template = calls.flow(storage, clock, "template", wait.signal("go"))
    worker = Worker(template, clock=clock, concurrency=2)
    assert await worker.run_once() == ["t0", "t1", "t2"]
    assert calls.log.count("template") == 3  # the template's step, run for each copy


async def test_two_workers_never_resume_one_run_twice(storage: Storage) -> None:
    clock, calls = ManualClock(START), Calls()
    ids = [f"r{n}" for n in range(8)]
    for wid in ids:
        await park(calls, storage, clock, wid, wait.signal("go"))
        await asyncflow.signal(storage, wid, "go")
    await park(calls, storage, clock, "not-due", wait.signal("go"))

    def make(wid: str) -> AsyncFlow:
        return calls.flow(storage, clock, wid, wait.signal("go"))

    workers = [Worker(make, storage=storage, clock=clock, concurrency=3) for _ in range(2)]
    results: list[list[str]] = []

    async def go(worker: Worker) -> None:
        results.append(await worker.run_once())

    async with anyio.create_task_group() as group:
        for worker in workers:
            group.start_soon(go, worker)
    assert Counter(calls.log) == Counter(ids)  # each due run's step ran exactly once
    assert sorted(results[0] + results[1]) == ids


async def test_a_scan_reads_run_json_only() -> None:
    clock, calls = ManualClock(START), Calls()
    storage = CountingStorage(StorageDefault())
    for n in range(5):
        flow = AsyncFlow(config=Config(storage=storage, clock=clock), workflow_id=f"s{n}")  # type: ignore[arg-type]
        for k in range(20):
            flow.task.add(step=action(lambda: 1), key=f"k{k}")
        flow.task.add(step=wait.signal("go"), key="wait")
        await flow.start(on_wait="park")
    storage.reads.clear()
    storage.lists.clear()
    worker = Worker(
        lambda wid: calls.flow(storage, clock, wid, wait.signal("go")), storage=storage, clock=clock
    )  # type: ignore[arg-type]
    assert await worker.run_once() == []
    assert sorted(storage.reads) == [f"s{n}/run.json" for n in range(5)]
    # one delimiter listing of the top level (the workflows), one of each
    # candidate's signals/: no task record
    assert sorted(storage.lists) == sorted(["children:"] + [f"s{n}/signals/" for n in range(5)])


def test_worker_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="concurrency"):
        Worker(AsyncFlow(), concurrency=0)
    with pytest.raises(ConfigurationError, match="poll_interval"):
        Worker(AsyncFlow(), poll_interval=0)
    with pytest.raises(ConfigurationError, match="storage="):
        Worker(lambda wid: AsyncFlow(workflow_id=wid))
    with pytest.raises(ConfigurationError, match="AsyncFlow or a function"):
        Worker(42)  # type: ignore[arg-type]


async def test_run_loop_resumes_when_due_and_stops_gracefully() -> None:
    clock, calls = ManualClock(START), Calls()
    storage = StorageDefault()
    await park(calls, storage, clock, "loop", wait.sleep(30))
    worker = Worker(
        lambda wid: calls.flow(storage, clock, wid, wait.sleep(30)),
        storage=storage,
        clock=clock,
        poll_interval=3600,
    )
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        with anyio.fail_after(10):
            while clock.sleepers == 0:  # the loop sleeps until the run's due time
                await anyio.sleep(0.01)
            await clock.advance(seconds=30)
            while not calls.log:
                await anyio.sleep(0.01)
        worker.stop()
    assert calls.log == ["loop"]
    assert worker.resumed == ["loop"]


async def test_list_children_names_one_level_down(storage: Storage) -> None:
    for key in ("a/run.json", "a/tasks/x.json", "b/tasks/deep/y.json", "c.json", "ab/run.json"):
        await storage.write(key, b"{}")
    own = storage.list_children  # type: ignore[attr-defined]  # every bundled backend has it
    assert [s async for s in own("")] == ["a/", "ab/", "b/", "c.json"]
    assert [s async for s in own("a/")] == ["run.json", "tasks/"]
    assert [s async for s in own("b/tasks/")] == ["deep/"]
    assert [s async for s in own("zzz/")] == []
    # the worker keeps the folders only: the workflow ids, one level down
    assert [wid async for wid in list_workflows(storage)] == ["a", "ab", "b"]
    assert [wid async for wid in list_workflows(storage, "a")] == ["a", "ab"]
    with pytest.raises(ConfigurationError, match=r"end with '/'.*'a'"):
        [s async for s in own("a")]
    with pytest.raises(ConfigurationError, match=r"end with '/'.*'a'"):
        [s async for s in list_children(storage, "a")]


async def test_run_loop_survives_a_failed_scan() -> None:
    clock, calls = ManualClock(START), Calls()
    inner = StorageDefault()
    storage = CountingStorage(inner)
    failures = [StorageUnavailable("the bucket is down")]

    async def flaky_list_children(prefix: str) -> AsyncIterator[str]:
        if failures:
            raise failures.pop()
        async for segment in inner.list_children(prefix):
            yield segment

    storage.list_children = flaky_list_children  # type: ignore[method-assign]
    await park(calls, inner, clock, "flaky", wait.signal("go"))
    await asyncflow.signal(inner, "flaky", "go")
    worker = Worker(
        lambda wid: calls.flow(inner, clock, wid, wait.signal("go")),
        storage=storage,  # type: ignore[arg-type]
        clock=clock,
        poll_interval=0.01,
    )
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        with anyio.fail_after(10):
            while not calls.log:
                await anyio.sleep(0.01)
        worker.stop()
    assert failures == []
    assert calls.log == ["flaky"]


async def test_cancel_stops_runs_in_flight_and_they_stay_resumable() -> None:
    clock, storage = ManualClock(START), StorageDefault()
    started, log = anyio.Event(), []

    def make(wid: str, *, hang: bool = True) -> AsyncFlow:
        async def slow(previous_context: Context) -> Any:
            log.append(previous_context.storage)
            if hang:
                started.set()
                await anyio.sleep_forever()
            return "done"

        flow = AsyncFlow(config=Config(storage=storage, clock=clock), workflow_id=wid)
        flow.task.add(step=wait.signal("go"), key="wait")
        flow.task.add(step=action(slow), key="slow")
        return flow

    await make("hang").start(on_wait="park")
    await asyncflow.signal(storage, "hang", "go", "payload")
    worker = Worker(make, storage=storage, clock=clock, poll_interval=0.01)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await started.wait()
            worker.cancel()
    blob = await storage.read("hang/run.json")
    assert blob is not None
    assert b'"status":"cancelled"' in blob.data
    again = await make("hang", hang=False).start(resume=True)
    assert again.status == "completed"
    assert again.result_task()[0].restored  # the wait's payload came from its checkpoint
    assert log == ["payload", "payload"]
