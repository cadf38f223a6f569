"""A running run drawn from its run.json's progress index; past runs of graphs with maps."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow._core import runs
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import Storage, StorageDefault
from asyncflow.ui import create_app
from tests.ui import demo
from tests.ui.test_app import Counting, client

pytestmark = pytest.mark.anyio

TASKS = 30


def part(i: int, gate: anyio.Event) -> Any:
    async def step(initial_context: Context) -> dict[str, int]:
        if initial_context.storage == TASKS - 1:
            await gate.wait()
        if initial_context.storage == 7:
            raise ValueError("item 7 is malformed <b>")
        return {"item": int(initial_context.storage)}

    step.__qualname__ = f"part_{i}"
    return action(step)


@asynccontextmanager
async def running(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[], Awaitable[Manifest]]]:
    """A run of ``TASKS`` tasks whose last one waits, indexed in run.json, until the exit."""
    monkeypatch.setattr(runs, "LIVE_EVERY", 0.02)
    gate = anyio.Event()
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="live")
    for i in range(TASKS):
        flow.task.add(step=part(i, gate), initial_context=i)

    async def manifest() -> Manifest:
        blob = await storage.read(manifest_key("live"))
        assert blob is not None
        return Manifest.decode(blob.data, "run.json")

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: flow.start(mode="parallel", keep_going=True))
        with anyio.fail_after(30):
            while True:
                await anyio.sleep(0.02)
                if await storage.read(manifest_key("live")) is None:
                    continue
                progress = (await manifest()).progress
                if progress is not None and len(progress["done"]) == TASKS - 1:
                    break
        try:
            yield manifest
        finally:
            gate.set()


def statuses(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-key="([^"]+)" data-status="([^"]+)"', html))


async def test_a_running_run_page_reads_run_json_and_the_lease_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = StorageDefault()
    counting = Counting(store)
    async with running(store, monkeypatch), client(create_app(counting)) as http:  # type: ignore[arg-type]
        page = await http.get("/workflows/live")
        reads, lists = list(counting.reads), counting.lists
        again = await http.get("/workflows/live", headers={"X-Asyncflow-Partial": "1"})
    assert page.status_code == 200
    assert sorted(reads) == ["live/lease.json", "live/run.json"]
    assert lists == 0
    assert page.headers["x-asyncflow-live"] == "1"
    seen = statuses(page.text)
    assert seen[f"part_{TASKS - 1}"] == "running"
    assert seen["part_7"] == "failed"
    assert sum(1 for s in seen.values() if s == "completed") == TASKS - 2
    assert "ValueError: item 7 is malformed &lt;b&gt;" in page.text
    assert "raise ValueError(&#34;item 7 is malformed &lt;b&gt;&#34;)" in page.text  # traceback
    bars = re.findall(r"<title>part_\d+: (?:completed|failed), \d", page.text)
    assert len(bars) == TASKS - 1  # the timeline has every ended task, with its times
    assert statuses(again.text) == seen


async def test_a_task_of_a_running_run_reads_its_one_record_when_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = StorageDefault()
    counting = Counting(store)
    async with running(store, monkeypatch), client(create_app(counting)) as http:  # type: ignore[arg-type]
        task = await http.get("/workflows/live/tasks/part_3")
        task_reads = list(counting.reads)
        counting.reads.clear()
        failed = await http.get("/workflows/live/tasks/part_7")
    assert task.status_code == 200
    assert sorted(task_reads) == ["live/lease.json", "live/run.json", "live/tasks/part_3.json"]
    assert counting.lists == 0
    assert "&#34;item&#34;: 3" in task.text or '"item": 3' in task.text
    assert failed.status_code == 200
    assert "item 7 is malformed" in failed.text
    assert "Traceback" in failed.text
    assert "live/runs/" not in " ".join(counting.reads)  # the index had the traceback


async def test_an_old_run_json_without_the_index_still_renders_from_the_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = StorageDefault()
    counting = Counting(store)
    async with running(store, monkeypatch) as manifest, client(create_app(counting)) as http:  # type: ignore[arg-type]
        with_index = statuses((await http.get("/workflows/live")).text)
        # Nothing changes while the last task waits, so the writer leaves this be.
        old = (await manifest()).replace(progress=None)
        await store.write(manifest_key("live"), old.encode())
        counting.reads.clear()
        page = await http.get("/workflows/live")
    assert page.status_code == 200
    records = [k for k in counting.reads if "/tasks/" in k]
    assert len(records) == TASKS - 2  # every record there is (the failed task has none)
    seen = statuses(page.text)
    assert seen[f"part_{TASKS - 1}"] == "running"
    assert sum(1 for s in seen.values() if s == "completed") == TASKS - 2
    assert {k: s for k, s in with_index.items() if s == "completed"} == {
        k: s for k, s in seen.items() if s == "completed"
    }


async def test_a_past_run_of_a_graph_draws_its_map_children() -> None:
    store = StorageDefault()
    await demo.graph(store)
    await demo.graph(store)  # the first run is now a past one
    async with client(create_app(store)) as http:
        history = await http.get("/workflows/catalog-graph/runs")
        run_ids = re.findall(r'href="/workflows/catalog-graph/runs/([^"]+)"', history.text)
        assert len(run_ids) == 2
        past = await http.get(f"/workflows/catalog-graph/runs/{min(run_ids)}")
    assert past.status_code == 200
    assert "(a past run" in past.text
    nodes = re.findall(r'<g class="node" data-key="([^"]+)" data-status="([^"]+)"', past.text)
    assert ("fetch[*]", "failed") in nodes
    assert "fetch: 15 mapped tasks: 14 completed, 1 failed" in past.text
    assert past.text.count('class="edge"') == 6


async def test_a_crashed_run_reads_only_the_records_its_index_does_not_name() -> None:
    store = StorageDefault()
    await demo.fill(store, big=4)
    blob = await store.read(manifest_key("thumbnails"))
    assert blob is not None
    ended = Manifest.decode(blob.data, "run.json")
    index = {"done": [["part_0", "completed", 1, 10.0, 11.0]], "errors": {}, "omitted": 0}
    crashed = ended.replace(status="running", outcomes={}, errors={}, progress=index)
    await store.write(manifest_key("thumbnails"), crashed.encode())
    await store.delete("thumbnails/lease.json")  # no runner: crashed
    counting = Counting(store)
    async with client(create_app(counting)) as http:  # type: ignore[arg-type]
        page = await http.get("/workflows/thumbnails")
    assert page.status_code == 200
    assert "crashed" in page.text
    records = sorted(k for k in counting.reads if "/tasks/" in k)
    assert records == [f"thumbnails/tasks/part_{i}.json" for i in range(1, 8)]
    assert set(statuses(page.text).values()) == {"completed"}
