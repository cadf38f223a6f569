"""``read_run`` (``asyncflow status``): a live run read from its progress index, not its records."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow._core import runs
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.lease import lease_key
from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import Storage
from asyncflow.reading import RunState, TaskState, read_run
from tests.counting import CountingStorage

pytestmark = pytest.mark.anyio

TASKS = 12
FAILING = 7


def part(i: int, gate: anyio.Event) -> Any:
    async def step(initial_context: Context) -> dict[str, int]:
        if initial_context.storage == TASKS - 1:
            await gate.wait()
        if initial_context.storage == FAILING:
            raise ValueError("item 7 is malformed")
        return {"item": int(initial_context.storage)}

    step.__qualname__ = f"part_{i}"
    return action(step)


@asynccontextmanager
async def running(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, workflow_id: str = "live"
) -> AsyncIterator[Callable[[], Awaitable[Manifest]]]:
    """A live run whose last task waits until the exit; every other task ended and is indexed."""
    monkeypatch.setattr(runs, "LIVE_EVERY", 0.02)
    gate = anyio.Event()
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)
    for i in range(TASKS):
        flow.task.add(step=part(i, gate), initial_context=i)

    async def manifest() -> Manifest:
        blob = await storage.read(manifest_key(workflow_id))
        assert blob is not None
        return Manifest.decode(blob.data, "run.json")

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: flow.start(mode="parallel", keep_going=True))
        with anyio.fail_after(30):
            while True:
                await anyio.sleep(0.02)
                if await storage.read(manifest_key(workflow_id)) is None:
                    continue
                progress = (await manifest()).progress
                if progress is not None and len(progress["done"]) == TASKS - 1:
                    break
        try:
            yield manifest
        finally:
            gate.set()


def told(state: RunState) -> dict[str, tuple[Any, ...]]:
    """What ``status`` shows of each task that completed, read either way.

    The times are compared apart (``same_starts``), and the end not at all:
    the index has the task's own end (as the run summary has it once the run
    ends), after its checkpoint was written; the record has the moment
    before that write.
    """
    return {
        t.key: (t.step, t.status, t.index, t.attempts, t.checkpoint)
        for t in state.tasks
        if t.status == "completed"
    }


def same_starts(one: RunState, other: RunState) -> bool:
    starts = {t.key: t.started_at for t in other.tasks if t.status == "completed"}
    return all(
        abs((t.started_at or 0) - (starts[t.key] or 0)) < 1e-3
        for t in one.tasks
        if t.status == "completed"
    )


def by_key(state: RunState) -> dict[str, TaskState]:
    return {task.key: task for task in state.tasks}


async def test_a_live_run_is_read_from_run_json_and_the_lease_alone(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(storage, monkeypatch) as manifest:
        counting = CountingStorage(storage)
        state = await read_run(counting, "live")  # type: ignore[arg-type]
        assert sorted(counting.reads) == [lease_key("live"), manifest_key("live")]
        assert counting.lists == []
        # the same run.json without its index (an older version) is read from every record
        old = (await manifest()).replace(progress=None)
        await storage.write(manifest_key("live"), old.encode())
        counting = CountingStorage(storage)
        from_records = await read_run(counting, "live")  # type: ignore[arg-type]
        assert len(counting.records_read()) == TASKS - 2  # the failed and the waiting: none
    assert state is not None
    assert from_records is not None
    assert state.status == from_records.status == "running"
    assert told(state) == told(from_records)
    assert same_starts(state, from_records)
    assert len(told(state)) == TASKS - 2
    tasks = by_key(state)
    assert tasks["part_7"].status == "failed"  # the records alone cannot tell: "pending"
    assert by_key(from_records)["part_7"].status == "pending"
    assert tasks["part_7"].error == "ValueError: item 7 is malformed"
    assert state.running == (f"part_{TASKS - 1}",)
    # the header's "running now" and the task's own row agree
    assert tasks[f"part_{TASKS - 1}"].status == "running"
    assert by_key(from_records)[f"part_{TASKS - 1}"].status == "running"
    assert tasks["part_0"].signed is None  # not read: the index does not say
    assert by_key(from_records)["part_0"].signed is False


async def test_tasks_beyond_the_index_cap_are_read_from_their_records(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(storage, monkeypatch) as manifest:
        full = await manifest()
        assert full.progress is not None
        kept = full.progress["done"][:4]
        capped = {"done": kept, "errors": {}, "omitted": len(full.progress["done"]) - 4}
        await storage.write(manifest_key("live"), full.replace(progress=capped).encode())
        counting = CountingStorage(storage)
        state = await read_run(counting, "live")  # type: ignore[arg-type]
        old = full.replace(progress=None)
        await storage.write(manifest_key("live"), old.encode())
        from_records = await read_run(storage, "live")
    assert state is not None
    assert from_records is not None
    indexed = {entry[0] for entry in kept}
    expected = sorted(
        f"live/tasks/part_{i}.json"
        for i in range(TASKS - 1)
        if i != FAILING and f"part_{i}" not in indexed
    )
    assert counting.records_read() == expected
    assert len(counting.lists) == 1
    assert told(state) == told(from_records)
    assert same_starts(state, from_records)


async def test_a_crashed_run_reads_only_the_records_its_index_does_not_name(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(storage, monkeypatch, "gone") as manifest:
        live = await manifest()
    assert live.progress is not None
    # the runner vanished: run.json still says running, with the index of its last write
    kept = [entry for entry in live.progress["done"] if entry[0] in ("part_0", "part_1")]
    index = {"done": kept, "errors": {}, "omitted": 0}
    crashed = dataclasses.replace(live, status="running", outcomes={}, errors={}, progress=index)
    await storage.write(manifest_key("gone"), crashed.encode())
    await storage.delete(lease_key("gone"))
    counting = CountingStorage(storage)
    state = await read_run(counting, "gone")  # type: ignore[arg-type]
    assert state is not None
    assert state.status == "crashed"
    expected = sorted(f"gone/tasks/part_{i}.json" for i in range(2, TASKS) if i != FAILING)
    assert counting.records_read() == expected
    assert {t.status for t in state.tasks if t.key != "part_7"} == {"completed"}


async def test_an_ended_run_is_read_as_before(storage: Storage) -> None:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="done")
    gate = anyio.Event()
    gate.set()
    for i in range(3):
        flow.task.add(step=part(i, gate), initial_context=i)
    await flow.start()
    counting = CountingStorage(storage)
    state = await read_run(counting, "done")  # type: ignore[arg-type]
    assert state is not None
    assert state.status == "completed"
    assert counting.records_read() == [f"done/tasks/part_{i}.json" for i in range(3)]
    assert {t.signed for t in state.tasks} == {False}
