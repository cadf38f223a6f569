"""reset and fork: invalidate a task and its dependents; a new workflow from old records."""

from __future__ import annotations

import pytest

from asyncflow import (
    AsyncFlow,
    CheckpointCorrupt,
    Config,
    ConfigurationError,
    WorkflowLocked,
    action,
    fork,
    reset,
)
from asyncflow._kernel.lease import Lease
from asyncflow.providers import Storage

pytestmark = pytest.mark.anyio

KEY = b"k" * 32
CALLS: list[str] = []


def make(name: str) -> object:
    @action
    def step(previous_context: object) -> str:
        CALLS.append(name)
        return name.upper()

    return step


def build(storage: Storage, workflow_id: str, *, signing_key: bytes | None = None) -> AsyncFlow:
    flow = AsyncFlow(
        config=Config(storage=storage, signing_key=signing_key), workflow_id=workflow_id
    )
    for name, group in (("a", "g1"), ("b", "g2"), ("c", "g1"), ("d", "g2")):
        flow.task.add(step=make(name), key=name, group_name=group)
    return flow


async def test_reset_reruns_the_task_and_what_depends_on_it(storage: Storage) -> None:
    await build(storage, "r").start(mode="sequential_group", resume=True)
    CALLS.clear()
    assert await reset(storage, "r", "a") == ["a", "c"]  # its group's later tasks
    await build(storage, "r").start(mode="sequential_group", resume=True)
    assert sorted(CALLS) == ["a", "c"]
    with pytest.raises(ConfigurationError, match="did you mean 'b'"):
        await reset(storage, "r", "bb")


async def test_reset_in_parallel_mode_is_the_task_alone(storage: Storage) -> None:
    await build(storage, "p").start(mode="parallel", resume=True)
    CALLS.clear()
    assert await reset(storage, "p", "b") == ["b"]
    await build(storage, "p").start(mode="parallel", resume=True)
    assert CALLS == ["b"]


async def test_reset_refuses_while_a_runner_holds_the_lease(storage: Storage) -> None:
    await build(storage, "l").start(resume=True)
    holder = Lease(storage, "l", ttl=30.0, renew_every=10.0)
    await holder.acquire()
    try:
        with pytest.raises(WorkflowLocked):
            await reset(storage, "l", "a")
    finally:
        await holder.release()


async def test_fork_copies_the_records_before_the_key(storage: Storage) -> None:
    await build(storage, "src").start(resume=True)
    CALLS.clear()
    # two groups: c's chain is a, c; b and d do not depend on it
    assert await fork(storage, "src", "dst", from_key="c") == ["a", "b", "d"]
    flow = build(storage, "dst")
    await flow.start(resume=True)
    assert CALLS == ["c"]
    assert flow.result_storage() == ["A", "B", "C", "D"]
    assert [t.restored for t in flow.result_task()] == [True, True, False, True]
    with pytest.raises(ConfigurationError, match="already has records"):
        await fork(storage, "src", "dst")
    with pytest.raises(ConfigurationError, match=r"no run\.json"):
        await fork(storage, "nothing", "dst2")


async def test_fork_of_signed_records_verifies_and_resigns(storage: Storage) -> None:
    await build(storage, "s", signing_key=KEY).start(resume=True)
    with pytest.raises(CheckpointCorrupt, match="signed"):
        await fork(storage, "s", "s-nokey")
    assert await fork(storage, "s", "s2", signing_key=KEY) == ["a", "b", "c", "d"]
    CALLS.clear()
    flow = build(storage, "s2", signing_key=KEY)
    await flow.start(resume=True)
    assert CALLS == []
    # a tampered source record is refused, never laundered into a signed copy
    blob = await storage.read("s/tasks/a.json")
    assert blob is not None
    await storage.write("s/tasks/a.json", blob.data.replace(b'"A"', b'"Z"'))
    with pytest.raises(CheckpointCorrupt, match="bad signature"):
        await fork(storage, "s", "s3", signing_key=KEY)


async def test_fork_refuses_to_sign_unsigned_records(storage: Storage) -> None:
    await build(storage, "u").start(resume=True)
    with pytest.raises(ConfigurationError, match="not signed"):
        await fork(storage, "u", "u2", signing_key=KEY)


GRAPH_CALLS: list[str] = []


@action
def pages() -> list[int]:
    GRAPH_CALLS.append("pages")
    return [1, 2, 3]


@action
def fetch(initial_context: object) -> int:
    GRAPH_CALLS.append("fetch")
    return 1


@action
def total(previous_context: object) -> int:
    GRAPH_CALLS.append("total")
    return 3


@action
def audit() -> str:
    GRAPH_CALLS.append("audit")
    return "ok"


def graph_flow(storage: Storage, workflow_id: str) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)
    flow.task.add(step=pages, key="pages")
    flow.task.map(fetch, over="pages", key="fetch")
    flow.task.add(step=total, key="total", depends_on="fetch")
    flow.task.add(step=audit, key="audit")
    return flow


async def test_reset_and_fork_in_graph_mode_follow_the_recorded_edges(storage: Storage) -> None:
    GRAPH_CALLS.clear()
    await graph_flow(storage, "g").start(mode="graph", resume=True)
    assert sorted(GRAPH_CALLS) == ["audit", "fetch", "fetch", "fetch", "pages", "total"]
    # the map's edge to what it maps over is part of the recorded shape
    assert await reset(storage, "g", "pages") == ["pages", "fetch", "total"]
    assert not [k async for k in storage.list("g/tasks/fetch.")]  # its children went with it
    GRAPH_CALLS.clear()
    await graph_flow(storage, "g").start(mode="graph", resume=True)
    assert sorted(GRAPH_CALLS) == ["fetch", "fetch", "fetch", "pages", "total"]
    # fork before total: pages, the map and its children, audit
    assert await fork(storage, "g", "g2", from_key="total") == ["pages", "fetch", "audit"]
    copied = [k async for k in storage.list("g2/tasks/fetch.")]
    assert copied == [f"g2/tasks/fetch.{i}.json" for i in range(3)] + ["g2/tasks/fetch.json"]
    GRAPH_CALLS.clear()
    await graph_flow(storage, "g2").start(mode="graph", resume=True)
    assert GRAPH_CALLS == ["total"]
    # rerun_from on the flow in hand: the map, its children and what depends on it
    GRAPH_CALLS.clear()
    await graph_flow(storage, "g").start(mode="graph", resume=True, rerun_from="fetch")
    assert sorted(GRAPH_CALLS) == ["fetch", "fetch", "fetch", "total"]


async def test_fork_copies_offloaded_outputs(storage: Storage) -> None:
    @action
    def big() -> str:
        return "x" * 5000

    def blob_flow(workflow_id: str) -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=storage, offload_over=1000), workflow_id=workflow_id)
        flow.task.add(step=big, key="big")
        return flow

    await blob_flow("b").start(resume=True)
    assert [k async for k in storage.list("b/blobs/")]
    await storage.write("b/blobs/not-a-digest", b"a stranger")
    assert await fork(storage, "b", "b2") == ["big"]
    copied = [k async for k in storage.list("b2/blobs/")]
    assert len(copied) == 1  # the blob, not the stranger
    flow = blob_flow("b2")
    await flow.start(resume=True)
    assert flow.result_storage() == ["x" * 5000]
    assert [t.restored for t in flow.result_task()] == [True]


async def test_reset_deletes_the_blobs_only_the_reset_records_used(storage: Storage) -> None:
    @action
    def big() -> str:
        return "x" * 5000

    @action
    def other(previous_context: object) -> str:
        return "y" * 5000

    def blob_flow() -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=storage, offload_over=1000), workflow_id="gc")
        flow.task.add(step=big, key="big")
        flow.task.add(step=other, key="other")
        return flow

    await blob_flow().start(resume=True)
    assert len([k async for k in storage.list("gc/blobs/")]) == 2
    await storage.write("gc/blobs/not-a-digest", b"a stranger")
    assert await reset(storage, "gc", "other") == ["other"]
    left = [k async for k in storage.list("gc/blobs/")]
    assert len(left) == 2  # big's blob and the stranger; other's blob went with its record
    assert "gc/blobs/not-a-digest" in left
    flow = blob_flow()
    await flow.start(resume=True)
    assert [t.restored for t in flow.result_task()] == [True, False]
    assert flow.result_storage() == ["x" * 5000, "y" * 5000]


async def test_reset_marks_the_run_reset_until_the_next_resume(storage: Storage) -> None:
    from asyncflow.reading import read_manifest, read_run

    await build(storage, "s").start(resume=True)
    assert await reset(storage, "s", "c") == ["c"]  # the last of its group (g1)
    manifest = await read_manifest(storage, "s")
    assert manifest is not None
    assert manifest.status == "reset"
    assert manifest.progress is None
    assert manifest.running == ()
    assert manifest.interrupted == ()
    state = await read_run(storage, "s")
    assert state is not None
    assert state.status == "reset"
    assert [(t.key, t.status) for t in state.tasks] == [
        ("a", "completed"),
        ("b", "completed"),
        ("c", "not run"),
        ("d", "completed"),
    ]
    flow = await build(storage, "s").start(resume=True)
    assert flow.status == "completed"
    state = await read_run(storage, "s")
    assert state is not None
    assert state.status == "completed"


async def test_reset_of_a_failed_or_cancelled_run_shows_reset_too(storage: Storage) -> None:
    from asyncflow.reading import read_manifest

    await build(storage, "f").start(resume=True)
    for previous in ("failed", "cancelled", "running"):  # running: a crash, no live lease
        manifest = await read_manifest(storage, "f")
        assert manifest is not None
        await storage.write(
            "f/run.json", manifest.replace(status=previous, interrupted=("b",)).encode()
        )
        await reset(storage, "f", "b")
        manifest = await read_manifest(storage, "f")
        assert manifest is not None
        assert (manifest.status, manifest.interrupted) == ("reset", ())


async def test_reset_of_a_waiting_run_keeps_it_waiting_for_the_worker(storage: Storage) -> None:
    import asyncflow
    from asyncflow import Worker, wait
    from asyncflow.reading import read_manifest

    def parked(workflow_id: str) -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=storage, signal_poll=0.01), workflow_id=workflow_id)
        flow.task.add(step=make("a"), key="a")
        flow.task.add(step=make("b"), key="b")
        flow.task.add(step=wait.signal("go"), key="go")
        flow.task.add(step=make("c"), key="c")
        return flow

    await parked("w").start(on_wait="park")
    CALLS.clear()
    assert await reset(storage, "w", "b") == ["b", "go", "c"]
    manifest = await read_manifest(storage, "w")
    assert manifest is not None
    assert manifest.status == "waiting"  # still parked on the same armed wait
    assert list(manifest.waiting) == ["go"]
    worker = Worker(parked, storage=storage)
    assert await worker.run_once() == []  # not due yet
    await asyncflow.signal(storage, "w", "go", "yes")
    assert await worker.run_once() == ["w"]
    assert CALLS == ["b", "c"]  # the reset task re-ran, then the rest
