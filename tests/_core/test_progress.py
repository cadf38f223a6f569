"""The progress index: a live run's run.json says which tasks ended, how, and when."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow._core import progress as progress_module
from asyncflow._core import runs
from asyncflow._core.progress import ProgressIndex
from asyncflow._core.task import Task, TaskStatus
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.summary import RunSummary, run_summary_key
from asyncflow.providers import Storage, StorageFile
from asyncflow.reading import RunProgress

pytestmark = pytest.mark.anyio


def numbered(i: int, gate: anyio.Event | None = None) -> object:
    async def step(initial_context: Context) -> int:
        if gate is not None:
            await gate.wait()
        if initial_context.storage == 2:
            raise ValueError("item 2 is malformed")
        return int(initial_context.storage)

    step.__qualname__ = f"n{i}"
    return action(step)


async def read_manifest(storage: Storage, workflow_id: str) -> Manifest:
    blob = await storage.read(manifest_key(workflow_id))
    assert blob is not None
    return Manifest.decode(blob.data, "run.json")


async def test_a_live_run_json_indexes_the_tasks_that_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = StorageFile(tmp_path / "s")
    gate = anyio.Event()
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="live")
    for i in range(4):
        flow.task.add(step=numbered(i), initial_context=i)
    flow.task.add(step=numbered(4, gate), initial_context=4)
    monkeypatch.setattr(runs, "LIVE_EVERY", 0.02)
    seen: list[RunProgress] = []
    before = time.time()

    async def watch() -> None:
        while True:
            await anyio.sleep(0.02)
            if await storage.read(manifest_key("live")) is None:
                continue
            manifest = await read_manifest(storage, "live")
            if manifest.progress is not None:
                progress = RunProgress.from_json(manifest.progress)
                if len(progress.tasks) == 4:
                    seen.append(progress)
                    assert manifest.running == ("n4",)
                    gate.set()
                    return

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        await flow.start(mode="parallel", keep_going=True)
    (progress,) = seen
    assert progress.complete
    assert {k: t.outcome for k, t in progress.tasks.items()} == {
        "n0": "completed",
        "n1": "completed",
        "n2": "failed",
        "n3": "completed",
    }
    failed = progress.tasks["n2"]
    assert failed.error is not None
    assert failed.error.type == "ValueError"
    assert failed.error.message == "item 2 is malformed"
    assert 'raise ValueError("item 2 is malformed")' in failed.error.traceback
    for task in progress.tasks.values():
        assert task.attempts == 1
        assert task.started_at is not None
        assert task.finished_at is not None
        assert before <= task.started_at <= task.finished_at <= time.time()
    ended = await read_manifest(storage, "live")
    assert ended.status == "failed"
    assert ended.progress is None  # an ended run is told by its summary


def ended_task(key: str, status: TaskStatus, error: BaseException | None = None) -> Task:
    task = Task(
        task_id=0,
        key=key,
        step=numbered(0),  # type: ignore[arg-type]
        initial_context=Context(storage=None),
        group_name="default",
        callback=None,
        workflow_id="wf",
    )
    task.status = status
    task.attempts = 1
    task.error = error
    return task


def test_the_index_is_bounded_and_counts_what_it_leaves_out() -> None:
    finished: list[Task] = []
    index = ProgressIndex(finished, cap=3)
    assert not index.drain()
    finished += [ended_task(f"k{i}", TaskStatus.COMPLETED) for i in range(5)]
    assert index.drain()
    assert finished == []
    raw = index.to_json()
    assert [entry[0] for entry in raw["done"]] == ["k0", "k1", "k2"]
    assert raw["omitted"] == 2
    parsed = RunProgress.from_json(raw)
    assert not parsed.complete
    assert list(parsed.tasks) == ["k0", "k1", "k2"]


def test_an_error_keeps_a_bounded_message_and_only_the_first_tracebacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress_module, "ERRORS", 24)
    finished: list[Task] = []
    index = ProgressIndex(finished)
    for i in range(25):
        try:
            raise RuntimeError("x" * 3000)
        except RuntimeError as exc:
            finished.append(ended_task(f"f{i}", TaskStatus.FAILED, exc))
    index.drain()
    errors = index.to_json()["errors"]
    assert len(errors) == 24  # the 25th is indexed as failed, without its error
    assert index.to_json()["done"][24][:2] == ["f24", "failed"]
    assert all(len(e["message"]) == 500 for e in errors.values())
    assert errors["f0"]["traceback"].startswith("...")  # the end is kept
    assert all(0 < len(errors[f"f{i}"]["traceback"]) <= 2000 for i in range(20))
    assert errors["f20"]["traceback"] == ""


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([], "not an object"),
        ({"done": {}}, "must be a list"),
        ({"done": [["k", "completed"]]}, "not \\[key"),
        ({"done": [["k", "completed", "1", None, None]]}, "wrong types"),
        ({"done": [["k", "completed", 1, "noon", None]]}, "not a number"),
        ({"omitted": -1}, "a count"),
    ],
)
def test_a_malformed_index_is_named(raw: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        RunProgress.from_json(raw)


async def test_a_malformed_index_makes_run_json_corrupt(tmp_path: Path) -> None:
    from asyncflow._kernel.errors import CheckpointCorrupt

    manifest = Manifest("wf", "running", None, "parallel", ("a",), 1.0, 2.0)
    data = manifest.encode().replace(b'"run_id"', b'"progress":[1],"run_id"')
    with pytest.raises(CheckpointCorrupt, match="progress"):
        Manifest.decode(data, "wf/run.json")


@action
def pages() -> list[int]:
    return [0, 1, 2, 3]


@action
def fetch(initial_context: Context) -> int:
    if initial_context.storage == 2:
        raise ValueError("page 2 is gone")
    return int(initial_context.storage) * 10


async def test_the_summary_keeps_the_graph_and_the_map_children(tmp_path: Path) -> None:
    storage = StorageFile(tmp_path / "s")
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="mapped")
    flow.task.add(step=pages)
    flow.task.map(fetch, over="pages", key="fetch")
    await flow.start(mode="graph", keep_going=True)
    manifest = await read_manifest(storage, "mapped")
    assert manifest.run_id is not None
    where = run_summary_key("mapped", manifest.run_id)
    blob = await storage.read(where)
    assert blob is not None
    summary = RunSummary.decode(blob.data, where)
    assert summary.shape is not None
    assert summary.shape.kinds == {"fetch": "map"}
    assert summary.shape.children == {"fetch": 4}
    children = {c.key: c for c in summary.children}
    assert sorted(children) == ["fetch.0", "fetch.1", "fetch.2", "fetch.3"]
    assert children["fetch.2"].outcome == "failed"
    assert children["fetch.2"].error is not None
    assert children["fetch.2"].error.message == "page 2 is gone"
    assert children["fetch.1"].outcome == "completed"
    assert children["fetch.1"].step == "fetch"
    assert summary.children_omitted == 0
    assert [t.key for t in summary.tasks] == ["pages", "fetch"]  # top-level tasks stay apart


async def test_restored_tasks_are_indexed_with_their_records_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = StorageFile(tmp_path / "s")
    gate = anyio.Event()

    def build(last: anyio.Event | None) -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="again")
        flow.task.add(step=numbered(0), initial_context=0)
        flow.task.add(step=numbered(1, last), initial_context=1)
        return flow

    first = build(None)
    await first.start()
    monkeypatch.setattr(runs, "LIVE_EVERY", 0.02)
    await storage.delete("again/tasks/n1.json")
    found: list[RunProgress] = []

    async def watch() -> None:
        while True:
            await anyio.sleep(0.02)
            manifest = await read_manifest(storage, "again")
            if manifest.status == "running" and manifest.progress is not None:
                found.append(RunProgress.from_json(manifest.progress))
                gate.set()
                return

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        await build(gate).start(resume=True)
    entry = found[0].tasks["n0"]
    assert entry.outcome == "skipped"
    assert entry.started_at is not None
    assert entry.finished_at is not None
