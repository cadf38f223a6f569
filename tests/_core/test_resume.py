"""Checkpoint and resume semantics, on every storage backend."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from asyncflow import (
    AsyncFlow,
    CheckpointCorrupt,
    CheckpointMismatch,
    Config,
    Context,
    InputChangedError,
    TaskStatus,
    action,
)
from asyncflow.providers import Storage

pytestmark = pytest.mark.anyio


class Calls:
    """Steps that log each real execution, and fail on demand."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.failing: set[str] = set()

    def step(self, name: str, *, sync: bool = False) -> Any:
        def body(previous_context: Context) -> Any:
            self.log.append(name)
            if name in self.failing:
                raise RuntimeError(f"{name} failed")
            return {name: previous_context.storage}

        if sync:
            body.__qualname__ = name
            return action(body)

        async def abody(previous_context: Context) -> Any:
            return body(previous_context)

        abody.__qualname__ = name
        return action(abody)


def build(storage: Storage, calls: Calls, names: list[str], **kwargs: Any) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="resume-wf")
    for name in names:
        flow.task.add(step=calls.step(name, sync=name.startswith("s")), **kwargs)
    return flow


async def test_resume_skips_completed_and_feeds_saved_output(storage: Storage) -> None:
    calls = Calls()
    calls.failing.add("c")
    flow = build(storage, calls, ["a", "s_b", "c"])
    await flow.start(resume=True)
    assert calls.log == ["a", "s_b", "c"]
    assert flow.result_task()[2].status is TaskStatus.FAILED

    calls.log.clear()
    calls.failing.clear()
    flow = build(storage, calls, ["a", "s_b", "c"])
    seen = flow.events()
    await flow.start(resume=True)
    assert calls.log == ["c"]
    assert flow.result_storage()[2] == {"c": {"s_b": {"a": None}}}
    assert [t.restored for t in flow.result_task()] == [True, True, False]
    assert [t.status for t in flow.result_task()] == [TaskStatus.COMPLETED] * 3
    names = [type(e).__name__ async for e in seen]
    assert names.count("TaskSkipped") == 2
    assert names[-1] == "WorkflowFinished"


async def test_none_output_is_completed_and_skipped(storage: Storage) -> None:
    ran: list[int] = []

    @action
    async def returns_none() -> None:
        ran.append(1)

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="none-wf")
    flow.task.add(step=returns_none)
    await flow.start(resume=True)
    await flow.start(resume=True)
    assert ran == [1]
    assert flow.result_task()[0].restored


async def test_restoring_never_rewrites_the_checkpoint(storage: Storage) -> None:
    calls = Calls()
    flow = build(storage, calls, ["a", "b"])
    await flow.start(resume=True)
    before = {k: (await storage.read(k)) async for k in storage.list("resume-wf/tasks/")}
    await build(storage, calls, ["a", "b"]).start(resume=True)
    after = {k: (await storage.read(k)) async for k in storage.list("resume-wf/tasks/")}
    assert before == after
    assert calls.log == ["a", "b"]


async def test_changed_step_at_an_explicit_key_is_a_mismatch(storage: Storage) -> None:
    calls = Calls()
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="resume-wf")
    flow.task.add(step=calls.step("a"), key="first")
    flow.task.add(step=calls.step("b"), key="second")
    await flow.start(resume=True)
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="resume-wf")
    flow.task.add(step=calls.step("a"), key="first")
    flow.task.add(step=calls.step("other"), key="second")
    with pytest.raises(CheckpointMismatch) as info:
        await flow.start(resume=True)
    assert "'b'" in str(info.value)
    assert "'other'" in str(info.value)
    assert calls.log == ["a", "b"]


async def test_a_replaced_step_is_a_new_step(storage: Storage) -> None:
    """Default keys come from names: the step now in b's place never gets b's record."""
    calls = Calls()
    await build(storage, calls, ["a", "b"]).start(resume=True)
    calls.log.clear()
    flow = build(storage, calls, ["a", "other"])
    await flow.start(resume=True)
    assert calls.log == ["other"]
    assert [t.key for t in flow.result_task()] == ["a", "other"]


async def test_inserting_removing_and_moving_steps_keeps_checkpoints(storage: Storage) -> None:
    calls = Calls()
    calls.failing.add("c")
    await build(storage, calls, ["a", "b", "c"]).start(resume=True)
    calls.log.clear()
    calls.failing.clear()
    # "x" inserted before b: b's input changed, so b (and what follows) re-run; a stays.
    await build(storage, calls, ["a", "x", "b", "c"]).start(resume=True)
    assert calls.log == ["x", "b", "c"]
    calls.log.clear()
    await build(storage, calls, ["a", "x", "b", "c"]).start(resume=True)
    assert calls.log == []


async def test_independent_keyed_steps_move_freely(storage: Storage) -> None:
    """A step that takes no input is restored wherever it now is."""
    ran: list[str] = []

    def make(name: str) -> Any:
        async def body() -> str:
            ran.append(name)
            return name

        body.__qualname__ = name
        return action(body)

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="move-wf")
    for name in ["p", "q", "r"]:
        flow.task.add(step=make(name))
    await flow.start(resume=True)
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="move-wf")
    for name in ["r", "p", "q", "s"]:
        flow.task.add(step=make(name))
    await flow.start(resume=True)
    assert ran == ["p", "q", "r", "s"]
    assert flow.result_storage() == ["r", "p", "q", "s"]


async def test_repeated_steps_get_numbered_keys(storage: Storage) -> None:
    calls = Calls()
    flow = build(storage, calls, ["a", "a", "b", "a"])
    await flow.start(resume=True)
    assert [t.key for t in flow.result_task()] == ["a", "a-2", "b", "a-3"]


async def test_explicit_keys_survive_reordering(storage: Storage) -> None:
    calls = Calls()
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="keys-wf")
    flow.task.add(step=calls.step("load"), key="load")
    flow.task.add(step=calls.step("save"), key="save")
    await flow.start(mode="parallel", resume=True)
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="keys-wf")
    flow.task.add(step=calls.step("save"), key="save")
    flow.task.add(step=calls.step("load"), key="load")
    await flow.start(mode="parallel", resume=True)
    assert sorted(calls.log) == ["load", "save"]  # parallel: each ran once, in any order
    assert [k async for k in storage.list("keys-wf/tasks/")] == [
        "keys-wf/tasks/load.json",
        "keys-wf/tasks/save.json",
    ]


async def test_rerun_upstream_invalidates_downstream_checkpoints(storage: Storage) -> None:
    """With keep_going a later step ran on an empty input; once the failed step
    succeeds, that later checkpoint no longer matches its input and re-runs."""
    calls = Calls()
    calls.failing.add("b")
    await build(storage, calls, ["a", "b", "c"]).start(resume=True, keep_going=True)
    assert calls.log == ["a", "b", "c"]
    calls.log.clear()
    calls.failing.clear()
    flow = build(storage, calls, ["a", "b", "c"])
    await flow.start(resume=True)
    assert calls.log == ["b", "c"]
    assert flow.result_storage()[2] == {"c": {"b": {"a": None}}}


async def test_resume_in_every_mode(storage: Storage) -> None:
    for mode in ("sequential", "sequential_group", "background", "parallel"):
        calls = Calls()
        calls.failing.add("y")
        flow = AsyncFlow(config=Config(storage=storage), workflow_id=f"mode-{mode}")
        flow.task.add(step=calls.step("x"), group_name="g1")
        flow.task.add(step=calls.step("y"), group_name="g2")
        flow.task.add(step=calls.step("z"), group_name="g1")
        await flow.start(mode=mode, resume=True, keep_going=True)  # type: ignore[arg-type]
        await flow.wait()
        assert sorted(calls.log) == ["x", "y", "z"], mode
        calls.log.clear()
        calls.failing.clear()
        await flow.start(mode=mode, resume=True)  # type: ignore[arg-type]
        await flow.wait()
        assert calls.log == ["y"], mode
        assert [t.status for t in flow.result_task()] == [TaskStatus.COMPLETED] * 3


async def test_fresh_start_without_resume_drops_old_checkpoints(storage: Storage) -> None:
    calls = Calls()
    await build(storage, calls, ["a", "b", "c"]).start(resume=True)
    calls.failing.add("a")
    await build(storage, calls, ["a", "b", "c"]).start()  # a new run: old records go
    assert [k async for k in storage.list("resume-wf/tasks/")] == []
    calls.failing.clear()
    calls.log.clear()
    await build(storage, calls, ["a", "b", "c"]).start(resume=True)
    assert calls.log == ["a", "b", "c"]


@pytest.mark.parametrize("policy", ["reuse", "reset", "raise"])
async def test_input_change_policies(storage: Storage, policy: str) -> None:
    ran: list[Any] = []

    @action
    async def echo(initial_context: Context) -> Any:
        ran.append(initial_context.storage)
        return initial_context.storage

    def flow_with(value: Any) -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="input-wf")
        flow.task.add(step=echo, initial_context=value)
        return flow

    await flow_with({"day": 1}).start(resume=True, on_input_change=policy)  # type: ignore[arg-type]
    again = flow_with({"day": 1})
    await again.start(resume=True, on_input_change=policy)  # type: ignore[arg-type]
    assert ran == [{"day": 1}]
    changed = flow_with({"day": 2})
    if policy == "raise":
        with pytest.raises(InputChangedError, match="input-wf"):
            await changed.start(resume=True, on_input_change="raise")
        assert ran == [{"day": 1}]
    elif policy == "reset":
        await changed.start(resume=True, on_input_change="reset")
        assert ran == [{"day": 1}, {"day": 2}]
        assert changed.result_storage() == [{"day": 2}]
    else:
        await changed.start(resume=True, on_input_change="reuse")
        assert ran == [{"day": 1}]
        assert changed.result_storage() == [{"day": 1}]


async def test_explicit_fingerprint(storage: Storage) -> None:
    ran: list[int] = []

    @action
    async def step() -> int:
        ran.append(1)
        return 1

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="fp-wf")
    flow.task.add(step=step)
    await flow.start(resume=True, fingerprint="v1")
    await flow.start(resume=True, fingerprint="v1", on_input_change="raise")
    with pytest.raises(InputChangedError):
        await flow.start(resume=True, fingerprint="v2", on_input_change="raise")
    assert ran == [1]


async def test_corrupt_record_is_an_error_not_a_rerun(storage: Storage) -> None:
    calls = Calls()
    await build(storage, calls, ["a", "b"]).start(resume=True)
    await storage.write("resume-wf/tasks/b.json", b'{"asyncflow": 1, "trunc')
    with pytest.raises(CheckpointCorrupt, match=r"resume-wf/tasks/b\.json"):
        await build(storage, calls, ["a", "b"]).start(resume=True)
    assert calls.log == ["a", "b"]


async def test_checkpoint_written_once_per_completion(storage: Storage) -> None:
    calls = Calls()
    flow = build(storage, calls, ["a", "b", "c"])
    stream = flow.events()
    await flow.start(resume=True)
    written = [e.key async for e in stream if type(e).__name__ == "CheckpointWritten"]  # type: ignore[attr-defined]
    assert written == ["a", "b", "c"]


async def test_resume_reads_in_bulk_concurrently(storage: Storage) -> None:
    """Resume lists once and reads concurrently: with a slow read, 40 records
    restore in about one read's time at concurrency 40, not 40 reads."""
    calls = Calls()
    names = [f"t{i}" for i in range(40)]
    await build(storage, calls, names).start(resume=True)
    reads = 0
    active = 0
    peak = 0

    class Slow:
        persistent = storage.persistent
        read_many = None  # hide StorageFile's batch read: this measures per-record reads

        async def read(self, key: str) -> Any:
            nonlocal reads, active, peak
            reads += 1
            active += 1
            peak = max(peak, active)
            await anyio.sleep(0.02)
            active -= 1
            return await storage.read(key)

        def __getattr__(self, name: str) -> Any:
            return getattr(storage, name)

    flow = AsyncFlow(
        config=Config(storage=Slow(), read_concurrency=40),  # type: ignore[arg-type]
        workflow_id="resume-wf",
    )
    for name in names:
        flow.task.add(step=calls.step(name))
    calls.log.clear()
    await flow.start(resume=True)
    assert calls.log == []
    assert reads == 43  # the lease, the manifest, the pack (none), then one read per record
    assert peak == 40


async def test_signed_records_refuse_tampering(storage: Storage) -> None:
    key = b"k" * 32
    calls = Calls()

    def signed_flow() -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=storage, signing_key=key), workflow_id="resume-wf")
        flow.task.add(step=calls.step("a"))
        return flow

    await signed_flow().start(resume=True)
    blob = await storage.read("resume-wf/tasks/a.json")
    assert blob is not None
    assert blob.data.startswith(b"asyncflow-hmac-sha256:")
    await signed_flow().start(resume=True)
    assert calls.log == ["a"]  # intact and signed: restored
    await storage.write("resume-wf/tasks/a.json", blob.data.replace(b'"a"', b'"b"', 1))
    with pytest.raises(CheckpointCorrupt, match="signature"):
        await signed_flow().start(resume=True)
    assert calls.log == ["a"]
