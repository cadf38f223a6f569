"""Graph, map and child-flow rules a user can trust (issue 25), on every backend.

Upstream failures skip, maps try every child, ``start()`` infers graph mode,
long map keys are records like any other, a child flow never takes over an
unrelated workflow, and a map child's digest covers its own item.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
import pytest

import asyncflow
from asyncflow import AsyncFlow, Config, ConfigurationError, Context, action, events
from asyncflow._core import runs
from asyncflow.providers import Storage
from asyncflow.reading import read_latest, read_run

pytestmark = pytest.mark.anyio


def flow_of(storage: Storage, workflow_id: str = "g") -> AsyncFlow:
    return AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)


async def run_json(storage: Storage, workflow_id: str = "g") -> dict[str, Any]:
    blob = await storage.read(f"{workflow_id}/run.json")
    assert blob is not None
    raw: dict[str, Any] = json.loads(blob.data)
    return raw


# ------------------------------------------------------------- upstream failed


@pytest.mark.parametrize("keep_going", [False, True])
async def test_a_task_whose_dependency_failed_is_skipped_upstream_failed(
    storage: Storage, keep_going: bool
) -> None:
    ran: list[str] = []

    @action
    async def load() -> list[int]:
        raise RuntimeError("no data")

    @action
    async def enrich(previous_context: Context) -> list[int]:
        ran.append("enrich")
        return list(previous_context.storage)  # would be TypeError on None

    @action
    async def report(previous_context: Context) -> str:
        ran.append("report")
        return "report"

    flow = flow_of(storage)
    flow.task.add(step=load, key="load")
    flow.task.add(step=enrich, key="enrich", depends_on="load")
    flow.task.add(step=report, key="report", depends_on="enrich")
    stream = flow.events()
    await flow.start(keep_going=keep_going)
    assert flow.status == "failed"
    assert ran == []
    skips = [(e.key, e.reason) async for e in stream if isinstance(e, events.TaskSkipped)]
    assert sorted(skips) == [("enrich", "upstream failed"), ("report", "upstream failed")]
    record = await run_json(storage)
    assert record["outcomes"] == {"load": "failed", "enrich": "skipped", "report": "skipped"}
    assert record["skipped"] == {"enrich": "upstream failed", "report": "upstream failed"}
    assert "enrich" not in record["errors"]
    for read in (read_run, read_latest):
        state = await read(storage, "g")
        assert state is not None
        rows = {t.key: t for t in state.tasks}
        assert rows["enrich"].status == "skipped"
        assert rows["enrich"].reason == "upstream failed"
        assert not rows["enrich"].checkpoint


async def test_a_live_run_shows_why_a_task_was_skipped(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "LIVE_EVERY", 0.02)
    gate = anyio.Event()

    @action
    async def load() -> None:
        raise RuntimeError("down")

    @action
    async def enrich(previous_context: Context) -> Any:
        return previous_context.storage

    @action
    async def slow() -> str:
        await gate.wait()
        return "slow"

    flow = flow_of(storage)
    flow.task.add(step=load, key="load")
    flow.task.add(step=enrich, key="enrich", depends_on="load")
    flow.task.add(step=slow, key="slow")
    async with anyio.create_task_group() as group:
        group.start_soon(functools.partial(flow.start, keep_going=True))
        with anyio.fail_after(30):
            while True:
                await anyio.sleep(0.02)
                state = await read_run(storage, "g")
                rows = {t.key: t for t in state.tasks} if state is not None else {}
                if "enrich" in rows and rows["enrich"].status == "skipped":
                    break
        assert state is not None
        assert state.status == "running"
        assert rows["enrich"].reason == "upstream failed"
        assert not rows["enrich"].checkpoint
        gate.set()


async def test_a_map_whose_children_ended_reads_running_before_run_json_says_so(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "LIVE_EVERY", 1000.0)  # run.json stays as the run began
    gate = anyio.Event()

    @action
    async def items() -> list[int]:
        return list(range(4))

    @action
    async def convert(initial_context: Context) -> int:
        if initial_context.storage >= 2:
            await gate.wait()
        return int(initial_context.storage)

    flow = flow_of(storage)
    flow.task.add(step=items, key="items")
    flow.task.map(convert, over="items", key="convert")
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        with anyio.fail_after(30):
            while True:
                await anyio.sleep(0.02)
                state = await read_run(storage, "g")
                if state is not None and state.children_done("convert") == (2, 2):
                    break
        assert {t.key: t.status for t in state.flow_tasks}["convert"] == "running"
        gate.set()


async def test_a_restored_task_is_skipped_without_a_reason(storage: Storage) -> None:
    @action
    async def one() -> int:
        return 1

    flow = flow_of(storage)
    flow.task.add(step=one, key="one")
    await flow.start(resume=True)
    await flow.start(resume=True)
    state = await read_latest(storage, "g")
    assert state is not None
    (row,) = state.tasks
    assert row.status == "skipped"
    assert row.reason is None
    assert row.checkpoint


# ---------------------------------------------------------------------- maps


async def test_a_map_tries_every_child_after_a_failure_then_names_them(storage: Storage) -> None:
    tried: list[int] = []
    bad = {7, 20, 41}

    @action
    async def pages() -> list[int]:
        return list(range(50))

    @action
    async def fetch(initial_context: Context) -> int:
        tried.append(initial_context.storage)
        if initial_context.storage in bad:
            raise ValueError(f"page {initial_context.storage} is bad")
        return int(initial_context.storage)

    flow = flow_of(storage)
    flow.task.add(step=pages, key="pages")
    flow.task.map(fetch, over="pages", key="fetch", max_concurrency=4)
    await flow.start(mode="graph")
    assert flow.status == "failed"
    assert sorted(tried) == list(range(50))  # every child tried, four at a time
    error = flow.result_task()[1].error
    assert error is not None
    assert "3 of 50 children failed; first: fetch.7" in str(error)
    records = [k async for k in storage.list("g/tasks/") if k.startswith("g/tasks/fetch.")]
    assert len(records) == 47

    tried.clear()
    bad.clear()
    again = flow_of(storage)
    again.task.add(step=pages, key="pages")
    again.task.map(fetch, over="pages", key="fetch")
    await again.start(mode="graph", resume=True)
    assert again.status == "completed"
    assert sorted(tried) == [7, 20, 41]  # one more run fixes every bad item


async def test_a_started_map_tries_its_children_when_another_task_fails(
    storage: Storage,
) -> None:
    tried: list[int] = []
    started = anyio.Event()

    @action
    async def items() -> list[int]:
        return list(range(6))

    @action
    async def slow(initial_context: Context) -> int:
        started.set()
        await anyio.sleep(0.02)
        tried.append(initial_context.storage)
        return int(initial_context.storage)

    @action
    async def broken() -> None:
        await started.wait()  # fails once the map has started
        raise RuntimeError("elsewhere")

    flow = flow_of(storage)
    flow.task.add(step=items, key="items")
    flow.task.map(slow, over="items", key="slow", max_concurrency=1)
    flow.task.add(step=broken, key="broken")
    await flow.start(mode="graph")
    assert flow.status == "failed"
    assert sorted(tried) == list(range(6))


async def test_start_without_a_mode_infers_graph(storage: Storage) -> None:
    @action
    async def top() -> list[int]:
        return [1, 2]

    @action
    async def double(initial_context: Context) -> int:
        return int(initial_context.storage) * 2

    @action
    async def total(previous_context: Context) -> int:
        return sum(previous_context.storage)

    flow = flow_of(storage)
    flow.task.add(step=top, key="top")
    flow.task.map(double, over="top", key="double")
    flow.task.add(step=total, key="total", depends_on="double")
    await flow.start()  # no mode: it used to raise "needs mode='graph'"
    assert flow.status == "completed"
    assert flow.result_storage()[-1] == 6
    assert (await run_json(storage))["mode"] == "graph"

    chain = flow_of(storage, "chain")
    chain.task.add(step=top, key="top")
    chain.task.add(step=total, key="total", depends_on="top")
    await chain.start()
    assert (await run_json(storage, "chain"))["mode"] == "graph"
    with pytest.raises(ConfigurationError, match="needs mode='graph'"):
        await chain.start(mode="sequential")  # an explicit mode is still checked


async def test_map_children_with_keys_over_128_characters_are_records(storage: Storage) -> None:
    key = "m" * 128
    runs: list[int] = []

    @action
    async def items() -> list[int]:
        return [1, 2]

    @action
    async def child(initial_context: Context) -> int:
        runs.append(initial_context.storage)
        return int(initial_context.storage)

    def flow() -> AsyncFlow:
        made = flow_of(storage)
        made.task.add(step=items, key="items")
        made.task.map(child, over="items", key=key)
        return made

    await flow().start()
    records = sorted([k async for k in storage.list("g/tasks/")])
    assert f"g/tasks/{key}.0.json" in records
    assert f"g/tasks/{key}.1.json" in records
    state = await read_run(storage, "g")
    assert state is not None
    assert f"{key}.1" in {t.key for t in state.tasks}
    assert not state.extra_records
    assert not state.problems

    cleared = await asyncflow.clear(storage, "g")
    assert cleared is not None
    assert [k async for k in storage.list("g/")] == []  # nothing left behind

    await flow().start()  # fresh: every child runs again, none is restored
    await flow().start()
    assert sorted(runs) == [1, 1, 1, 2, 2, 2]


async def test_a_childs_digest_covers_its_own_item(storage: Storage) -> None:
    ran: list[Any] = []
    values = [[1, 2, 3]]

    @action
    async def items() -> list[int]:
        return values[0]

    @action
    async def square(initial_context: Context) -> int:
        ran.append(initial_context.storage)
        return int(initial_context.storage) ** 2

    def flow() -> AsyncFlow:
        made = flow_of(storage)
        made.task.add(step=items, key="items")
        made.task.map(square, over="items", key="square")
        return made

    await flow().start(resume=True)
    assert sorted(ran) == [1, 2, 3]
    ran.clear()
    values[0] = [1, 2, 99]
    await storage.delete("g/tasks/items.json")  # so items re-runs and returns other items
    again = await flow().start(resume=True)
    assert ran == [99]  # only the child whose item changed
    assert again.result_storage()[1] == [1, 4, 9801]


# ------------------------------------------------------------------ child flows


async def snapshot(storage: Storage, prefix: str) -> dict[str, bytes]:
    found = {}
    for key in [k async for k in storage.list(prefix)]:
        blob = await storage.read(key)
        assert blob is not None
        found[key] = blob.data
    return found


def child_flow(log: list[str]) -> AsyncFlow:
    @action
    async def inner() -> str:
        log.append("inner")
        return "inner"

    child = AsyncFlow()
    child.task.add(step=inner, key="inner")
    return child


async def test_a_child_id_that_belongs_to_an_unrelated_workflow_is_refused(
    storage: Storage,
) -> None:
    log: list[str] = []

    @action
    async def theirs() -> str:
        return "precious"

    other = flow_of(storage, "nightly.prepare")
    other.task.add(step=theirs, key="theirs")
    await other.start()
    before = await snapshot(storage, "nightly.prepare/")

    parent = flow_of(storage, "nightly")
    parent.task.add(step=child_flow(log), key="prepare")
    with pytest.raises(ConfigurationError, match="belongs to another workflow"):
        await parent.start()
    assert log == []
    assert await snapshot(storage, "nightly.prepare/") == before  # untouched
    assert [k async for k in storage.list("nightly/")] == []  # the parent wrote nothing


async def test_a_nested_child_that_belongs_elsewhere_is_refused_before_anything_runs(
    storage: Storage,
) -> None:
    log: list[str] = []
    other = flow_of(storage, "top.mid.leaf")
    other.task.add(step=child_flow([]), key="x")  # a workflow of its own, with a child
    await other.start()
    mid = AsyncFlow()
    mid.task.add(step=child_flow(log), key="leaf")
    top = flow_of(storage, "top")
    top.task.add(step=mid, key="mid")
    with pytest.raises(ConfigurationError, match=r"top\.mid\.leaf, which belongs"):
        await top.start()
    assert log == []
    assert await storage.read("top/run.json") is None


async def test_a_child_records_its_parent_and_is_resumed_and_cleared_with_it(
    storage: Storage,
) -> None:
    log: list[str] = []
    parent = flow_of(storage, "nightly")
    parent.task.add(step=child_flow(log), key="prepare")
    await parent.start(resume=True)
    assert (await run_json(storage, "nightly.prepare"))["parent"] == "nightly"
    await parent.start()  # a fresh start of the parent re-runs its own child
    assert parent.status == "completed"
    assert log == ["inner", "inner"]

    # a child written before children named their parent is still the parent's
    legacy = await run_json(storage, "nightly.prepare")
    del legacy["parent"]
    await storage.write("nightly.prepare/run.json", json.dumps(legacy).encode())
    await parent.start(resume=True)
    assert parent.status == "completed"

    cleared = await asyncflow.clear(storage, "nightly")
    assert cleared is not None
    assert cleared.children == ("nightly.prepare",)
    assert [k async for k in storage.list("nightly.prepare/")] == []
