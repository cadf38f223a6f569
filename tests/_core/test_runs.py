"""Run history: run ids, run summaries, run.json while live and how a run ended."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from asyncflow import AsyncFlow, CheckpointMismatch, Config, ConfigurationError, action
from asyncflow._core import runs
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.shape import dependents
from asyncflow._kernel.summary import RunSummary, new_run_id, runs_prefix
from asyncflow.providers import Storage, StorageFile
from asyncflow.reading import read_run

pytestmark = pytest.mark.anyio


@action
def extract() -> list[int]:
    return [1, 2, 3]


FAIL = {"on": True}


@action(retry=2)
def load(previous_context: object) -> str:
    if FAIL["on"]:
        raise ValueError("database is down")
    return "loaded"


async def manifest_of(storage: Storage, workflow_id: str) -> Manifest:
    blob = await storage.read(manifest_key(workflow_id))
    assert blob is not None
    return Manifest.decode(blob.data, "run.json")


async def summaries(storage: Storage, workflow_id: str) -> list[RunSummary]:
    names = [n async for n in storage.list(runs_prefix(workflow_id))]
    found = []
    for name in names:
        blob = await storage.read(name)
        assert blob is not None
        found.append(RunSummary.decode(blob.data, name))
    return found


def test_run_ids_sort_by_start_time() -> None:
    first, second = new_run_id(1_700_000_000.5), new_run_id(1_700_000_001.25)
    assert first < second
    assert first.startswith("20231114T221320.500000Z-")


async def test_every_start_is_a_run_with_a_summary(storage: Storage) -> None:
    FAIL["on"] = True
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="hist")
    flow.task.add(step=extract, key="extract")
    flow.task.add(step=load, key="load")
    await flow.start(resume=True, on_failure=lambda tasks: None)
    first = flow.run_id
    assert first is not None
    FAIL["on"] = False
    await flow.start(resume=True)
    assert flow.run_id != first

    found = await summaries(storage, "hist")
    assert [s.run_id for s in found] == sorted([first, flow.run_id])
    failed, done = found
    assert failed.status == "failed"
    assert done.status == "completed"
    outcome = {t.key: t for t in failed.tasks}
    assert outcome["extract"].outcome == "completed"
    assert outcome["load"].outcome == "failed"
    assert outcome["load"].attempts == 2
    error = outcome["load"].error
    assert error is not None
    assert error.type == "ValueError"
    assert error.message == "database is down"
    assert "raise ValueError" in error.traceback
    assert failed.pid > 0
    assert failed.host
    assert {t.key: t.outcome for t in done.tasks} == {"extract": "skipped", "load": "completed"}
    manifest = await manifest_of(storage, "hist")
    assert manifest.run_id == flow.run_id
    assert manifest.status == "completed"
    assert manifest.groups == ("default", "default")


async def test_old_run_json_still_decodes() -> None:
    old = (
        b'{"asyncflow":1,"workflow_id":"w","status":"completed","fingerprint":null,'
        b'"mode":"sequential","tasks":["0"],"created_at":1.0,"updated_at":2.0}'
    )
    manifest = Manifest.decode(old, "w/run.json")
    assert manifest.run_id is None
    assert manifest.running == ()
    assert manifest.groups == ()


async def test_run_json_lists_running_tasks_while_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = StorageFile(tmp_path / "s")
    gate = anyio.Event()
    seen: list[Manifest] = []

    @action
    async def slow() -> int:
        await gate.wait()
        return 1

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="live")
    flow.task.add(step=slow, key="slow")

    async def watch() -> None:
        while True:
            await anyio.sleep(0.01)
            if await storage.read(manifest_key("live")) is None:
                continue
            manifest = await manifest_of(storage, "live")
            if manifest.running:
                seen.append(manifest)
                gate.set()
                return

    monkeypatch.setattr(runs, "LIVE_EVERY", 0.02)
    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        await flow.start()
    assert seen[0].running == ("slow",)
    assert seen[0].status == "running"
    state = await read_run(storage, "live")
    assert state is not None
    assert state.status == "completed"
    assert state.running == ()


async def test_cancel_scope_ends_cancelled_naming_the_interrupted_task(storage: Storage) -> None:
    started = anyio.Event()

    @action
    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="cx")
    flow.task.add(step=extract, key="extract")
    flow.task.add(step=forever, key="forever")
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        await started.wait()
        group.cancel_scope.cancel()
    manifest = await manifest_of(storage, "cx")
    assert manifest.status == "cancelled"
    assert manifest.interrupted == ("forever",)
    (summary,) = await summaries(storage, "cx")
    assert summary.status == "cancelled"
    assert summary.interrupted == ("forever",)


async def test_a_reader_reports_a_dead_runner_as_crashed(tmp_path: Path) -> None:
    storage = StorageFile(tmp_path / "s")
    now = 1_700_000_000.0
    dead = Manifest(
        workflow_id="gone",
        status="running",
        fingerprint=None,
        mode="sequential",
        tasks=("a",),
        created_at=now,
        updated_at=now,
        run_id=new_run_id(now),
    )
    await storage.write(manifest_key("gone"), dead.encode())
    state = await read_run(storage, "gone")
    assert state is not None
    assert state.status == "crashed"


def test_dependents_follow_the_recorded_shape() -> None:
    keys = ["a", "b", "c", "d"]
    assert dependents("b", mode="sequential", keys=keys) == ["b", "c", "d"]
    groups = ["x", "y", "x", "y"]
    assert dependents("a", mode="sequential_group", keys=keys, groups=groups) == ["a", "c"]
    assert dependents("b", mode="parallel", keys=keys) == ["b"]
    graph = {"b": ["a"], "c": ["a"], "d": ["c"]}
    assert dependents("c", mode="graph", keys=keys, depends_on=graph) == ["c", "d"]
    assert dependents("a", mode="graph", keys=keys, depends_on=graph) == keys
    with pytest.raises(ConfigurationError, match="did you mean 'b'"):
        dependents("bb", mode="sequential", keys=keys)


async def test_rerun_from_reruns_the_task_and_its_dependents(storage: Storage) -> None:
    calls: list[str] = []

    def make(name: str) -> object:
        @action
        def step() -> str:
            calls.append(name)
            return name

        return step

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="rr")
    for name in ("a", "b", "c"):
        flow.task.add(step=make(name), key=name)
    await flow.start(resume=True)
    assert calls == ["a", "b", "c"]
    calls.clear()
    await flow.start(resume=True, rerun_from="b")
    assert calls == ["b", "c"]
    calls.clear()
    await flow.start(resume=True)
    assert calls == []
    with pytest.raises(ConfigurationError, match="did you mean 'c'"):
        await flow.start(resume=True, rerun_from="cc")
    with pytest.raises(ConfigurationError, match="resume=True"):
        await flow.start(rerun_from="b")


async def test_on_code_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage = StorageFile(tmp_path / "s")
    calls: list[int] = []

    @action
    def step() -> int:
        calls.append(1)
        return 1

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="code")
    flow.task.add(step=step, key="k")
    await flow.start(resume=True)
    blob = await storage.read("code/tasks/k.json")
    assert blob is not None
    await storage.write(
        "code/tasks/k.json", blob.data.replace(b'"code_hash":"s2:', b'"code_hash":"s2:x')
    )
    with caplog.at_level(logging.WARNING, logger="asyncflow"):
        await flow.start(resume=True)
    assert calls == [1]
    assert "step (key k) changed since its checkpoint" in caplog.text
    with pytest.raises(CheckpointMismatch, match="different code"):
        await flow.start(resume=True, on_code_change="raise")
    await flow.start(resume=True, on_code_change="rerun")
    assert calls == [1, 1]
    with pytest.raises(ConfigurationError, match="on_code_change"):
        await flow.start(resume=True, on_code_change="keep")  # type: ignore[arg-type]


FAILING_SCRIPT = textwrap.dedent(
    """
    import anyio
    from asyncflow import AsyncFlow, action

    @action
    def boom():
        raise RuntimeError("the disk is full")

    async def main():
        flow = AsyncFlow(workflow_id="loud")
        flow.task.add(step=boom)
        await flow.start()

    anyio.run(main)
    """
)


def test_a_failed_run_nobody_handles_reaches_stderr(tmp_path: Path) -> None:
    script = tmp_path / "fails.py"
    script.write_text(FAILING_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "workflow loud failed" in done.stderr
    assert "RuntimeError: the disk is full" in done.stderr
    assert "Traceback" in done.stderr


def test_a_refused_background_run_says_so_at_once(tmp_path: Path) -> None:
    script = tmp_path / "locked.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            import anyio
            from asyncflow import AsyncFlow, Config, action
            from asyncflow.providers import StorageFile

            @action
            async def wait():
                await anyio.sleep(30)

            async def main():
                storage = StorageFile({str(tmp_path / "s")!r})
                holder = AsyncFlow(config=Config(storage=storage), workflow_id="locked")
                holder.task.add(step=wait)
                other = AsyncFlow(config=Config(storage=storage), workflow_id="locked")
                other.task.add(step=wait)
                async with anyio.create_task_group() as group:
                    group.start_soon(holder.start)
                    await anyio.sleep(0.5)
                    await other.start(mode="background")
                    await anyio.sleep(1)
                    print("still running", file=sys.stderr, flush=True)
                    group.cancel_scope.cancel()

            anyio.run(main)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    before, _, _ = done.stderr.partition("still running")
    assert "background run locked failed: WorkflowLocked" in before


async def test_live_run_json_backs_off_when_its_writes_are_slow() -> None:
    """A busy store (many runs sharing it) gets fewer progress writes, not one per second each."""
    from types import SimpleNamespace

    from asyncflow._core.progress import ProgressIndex
    from asyncflow._core.task import TaskStatus
    from asyncflow.providers import StorageDefault

    class SlowStore(StorageDefault):
        writes = 0

        async def write(self, key: str, data: bytes, **conditions: object) -> str:
            SlowStore.writes += 1
            await anyio.sleep(0.05)
            return await super().write(key, data, **conditions)  # type: ignore[arg-type]

    class Flipping(SimpleNamespace):
        """A task that is running at every other look: ``run.json`` is stale at each check."""

        looks = 0

        @property
        def status(self) -> TaskStatus:
            self.looks += 1
            return TaskStatus.IN_PROGRESS if self.looks % 2 else TaskStatus.NOT_STARTED

    manifest = Manifest(
        workflow_id="busy",
        status="running",
        fingerprint=None,
        mode="sequential",
        tasks=("a",),
        created_at=0.0,
        updated_at=0.0,
    )
    recorder = runs.RunRecorder(
        SlowStore(), "busy", new_run_id(), "sequential", False, live_every=0.001
    )
    with anyio.move_on_after(0.6):
        await recorder._watch(
            [Flipping(key="a", children=None, skip_reason=None)],  # type: ignore[list-item]
            manifest,
            None,
            ProgressIndex([]),
        )
    # Without the back-off: a write every ~0.05 s, about 12; with it, one
    # write, then a pause of 10x its 0.05 s.
    assert 1 <= SlowStore.writes <= 3


async def test_a_fresh_start_costs_one_listing_and_no_run_json_read(tmp_path: Path) -> None:
    """The storage calls of a start that does not resume, one by one (round trips on S3)."""
    calls: list[tuple[str, str]] = []

    class Counted(StorageFile):
        async def read(self, key: str) -> object:
            calls.append(("read", key))
            return await super().read(key)

        async def write(self, key: str, data: bytes, **conditions: object) -> str:
            calls.append(("write", key))
            return await super().write(key, data, **conditions)  # type: ignore[arg-type]

        async def list(self, prefix: str):  # type: ignore[no-untyped-def,override]
            calls.append(("list", prefix))
            async for key in super().list(prefix):
                yield key

    storage = Counted(tmp_path)
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="fresh")
    flow.task.add(step=extract, key="extract")
    for _ in range(2):  # a new workflow, then a fresh run over the old records
        calls.clear()
        await flow.start()
        starts = [c for c in calls if "/tasks/" not in c[1]]
        kinds = sorted((op, key.split("/", 1)[1].split("/")[0]) for op, key in starts)
        assert kinds == [
            ("list", ""),
            ("read", "lease.json"),
            ("write", "lease.json"),
            ("write", "lease.json"),
            ("write", "run.json"),
            ("write", "run.json"),
            ("write", "runs"),
            ("write", "runs"),
        ], starts
        assert ("write", "fresh/tasks/extract.json") in calls
