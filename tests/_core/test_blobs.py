"""Large outputs: the size limit, offload to ``{wf}/blobs/{sha256}``, verification and GC.

Every behaviour test runs over every backend (the ``storage`` fixture).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from asyncflow import (
    AsyncFlow,
    CheckpointCorrupt,
    Config,
    ConfigurationError,
    Context,
    SerializationError,
    TaskStatus,
    action,
    prune,
)
from asyncflow._core.config import DEFAULT_MAX_OUTPUT_BYTES
from asyncflow._core.records import clear_workflow
from asyncflow._kernel.blobs import blob_key, blob_prefix, collect_garbage
from asyncflow._kernel.codec import dumps
from asyncflow._kernel.layout import task_storage_key
from asyncflow.providers import Storage

pytestmark = pytest.mark.anyio

WF = "blobs-wf"
BIG = "x" * 5000  # over offload_over below
KEY = b"k" * 32


async def keys(storage: Storage, prefix: str) -> list[str]:
    return [key async for key in storage.list(prefix)]


def blob_of(value: Any) -> str:
    return hashlib.sha256(dumps(value)).hexdigest()


class Steps:
    """Steps returning ``outputs[name]``; each real run is logged."""

    def __init__(self, **outputs: Any) -> None:
        self.outputs = outputs
        self.ran: list[str] = []
        self.seen: dict[str, Any] = {}

    def step(self, name: str) -> Any:
        async def body(previous_context: Context) -> Any:
            self.ran.append(name)
            self.seen[name] = previous_context.storage
            return self.outputs[name]

        body.__qualname__ = name
        return action(body)


def build(storage: Storage, steps: Steps, *, mode_groups: bool = False, **config: Any) -> AsyncFlow:
    config.setdefault("offload_over", 1000)
    flow = AsyncFlow(config=Config(storage=storage, **config), workflow_id=WF)
    for i, name in enumerate(steps.outputs):
        group = f"g{i % 2}" if mode_groups else "default"
        flow.task.add(step=steps.step(name), key=name, group_name=group)
    return flow


async def test_large_outputs_are_stored_once_and_restored(storage: Storage) -> None:
    steps = Steps(a={"rows": BIG}, b={"rows": BIG}, c="small")
    await build(storage, steps).start(resume=True)
    assert await keys(storage, blob_prefix(WF)) == [blob_key(WF, blob_of({"rows": BIG}))]
    # the record holds a reference, not the output
    record = await storage.read(task_storage_key(WF, "a"))
    assert record is not None
    assert BIG.encode() not in record.data
    assert b'"asyncflow":2' in record.data
    again = Steps(a=None, b=None, c=None)
    flow = build(storage, again)
    await flow.start(resume=True)
    assert again.ran == []
    assert flow.result_storage() == [{"rows": BIG}, {"rows": BIG}, "small"]


async def test_offload_with_signing_and_registered_types(storage: Storage) -> None:
    from tests._core.test_registry import ALL, Box

    steps = Steps(a=Box((BIG, 1)), b=Box(2))
    await build(storage, steps, signing_key=KEY, types=ALL).start(resume=True)
    again = Steps(a=None, b=None)
    flow = build(storage, again, signing_key=KEY, types=ALL)
    await flow.start(resume=True)
    assert again.ran == []
    assert flow.result_storage() == [Box((BIG, 1)), Box(2)]
    # the signed record covers the blob through its SHA-256
    (blob,) = await keys(storage, blob_prefix(WF))
    await storage.write(blob, b'{"item":"changed"}')
    with pytest.raises(CheckpointCorrupt, match=f"blob {blob} .*altered") as caught:
        await build(storage, Steps(a=None, b=None), signing_key=KEY, types=ALL).start(resume=True)
    assert caught.value.key == blob


async def test_changed_or_missing_blob_is_corrupt_naming_it(storage: Storage) -> None:
    await build(storage, Steps(a=BIG)).start(resume=True)
    (blob,) = await keys(storage, blob_prefix(WF))
    found = await storage.read(blob)
    assert found is not None
    await storage.write(blob, found.data.replace(b"x", b"y", 1))
    with pytest.raises(CheckpointCorrupt, match=f"blob {blob}") as caught:
        await build(storage, Steps(a=None)).start(resume=True)
    assert caught.value.key == blob
    await storage.delete(blob)
    with pytest.raises(CheckpointCorrupt, match=f"refers to blob {blob}, which is missing"):
        await build(storage, Steps(a=None)).start(resume=True)


async def test_a_damaged_blob_found_by_a_new_write_is_written_again(storage: Storage) -> None:
    await build(storage, Steps(a=BIG)).start(resume=True)
    (blob,) = await keys(storage, blob_prefix(WF))
    await storage.delete(task_storage_key(WF, "a"))  # the blob is now an orphan...
    await storage.write(blob, b"garbage")  # ...and damaged
    rerun = Steps(a=BIG)
    await build(storage, rerun).start(resume=True)
    assert rerun.ran == ["a"]
    flow = build(storage, Steps(a=None))
    await flow.start(resume=True)
    assert flow.result_storage() == [BIG]


@pytest.mark.parametrize("mode", ["sequential", "sequential_group", "background", "parallel"])
async def test_offload_works_in_every_mode(storage: Storage, mode: str) -> None:
    steps = Steps(a=BIG, b=BIG + "b", c=BIG, d="d")
    flow = build(storage, steps, mode_groups=True)
    await flow.start(mode=mode, resume=True)  # type: ignore[arg-type]
    await flow.wait()
    assert len(await keys(storage, blob_prefix(WF))) == 2
    again = Steps(a=None, b=None, c=None, d=None)
    flow = build(storage, again, mode_groups=True)
    await flow.start(mode=mode, resume=True)  # type: ignore[arg-type]
    await flow.wait()
    assert again.ran == []
    assert flow.result_storage() == [BIG, BIG + "b", BIG, "d"]


async def test_offloading_does_not_change_what_the_next_step_sees(storage: Storage) -> None:
    """The output digest is the same offloaded or inline: no step re-runs when the setting moves."""
    await build(storage, Steps(a=BIG, b="done")).start(resume=True)
    again = Steps(a=None, b=None)
    flow = build(storage, again, offload_over=None)
    await flow.start(resume=True)
    assert again.ran == []
    assert flow.result_storage() == [BIG, "done"]
    rerun = Steps(a=None, b="again")
    await storage.delete(task_storage_key(WF, "b"))
    await build(storage, rerun).start(resume=True)
    assert rerun.seen["b"] == BIG


# --- garbage collection ---------------------------------------------------------------


async def test_a_fresh_run_and_clear_delete_every_blob(storage: Storage) -> None:
    await build(storage, Steps(a=BIG, b=BIG + "1")).start(resume=True)
    assert len(await keys(storage, blob_prefix(WF))) == 2
    await build(storage, Steps(a="small", b="small")).start(resume=False)
    assert await keys(storage, blob_prefix(WF)) == []
    await build(storage, Steps(a=BIG)).start(resume=False)
    assert len(await keys(storage, blob_prefix(WF))) == 1
    await clear_workflow(storage, WF)
    assert await keys(storage, f"{WF}/") in ([], [f"{WF}/lease.json"])


async def test_a_replaced_output_frees_its_blob_unless_shared(storage: Storage) -> None:
    await build(storage, Steps(a=BIG, b=BIG, c=BIG + "c")).start(resume=True)
    assert len(await keys(storage, blob_prefix(WF))) == 2
    # a and c re-run with new outputs (reset their records by hand); b still uses BIG's blob
    for key in ("a", "c"):
        await storage.delete(task_storage_key(WF, key))
    rerun = Steps(a="new", b=BIG, c="new")
    flow = build(storage, rerun)
    await flow.start(resume=True)
    assert rerun.ran == ["a", "b", "c"]  # b re-runs too: its input changed
    # c's blob is garbage, but only a run that replaced it knows; collect_garbage finds it
    assert await collect_garbage(storage, WF) == 1
    assert await keys(storage, blob_prefix(WF)) == [blob_key(WF, blob_of(BIG))]


async def test_a_run_that_overwrites_offloaded_records_collects_their_blobs(
    storage: Storage,
) -> None:
    ran: list[str] = []
    version = ["v1"]

    @action
    async def a() -> Any:
        ran.append("a")
        return version[0]

    @action
    async def b(previous_context: Context) -> Any:
        ran.append("b")
        return BIG + previous_context.storage

    def flow() -> AsyncFlow:
        made = AsyncFlow(config=Config(storage=storage, offload_over=1000), workflow_id=WF)
        made.task.add(step=a, key="a")
        made.task.add(step=b, key="b")
        return made

    await flow().start(resume=True)
    assert await keys(storage, blob_prefix(WF)) == [blob_key(WF, blob_of(BIG + "v1"))]
    # a runs again with a new output, so b re-runs and replaces its offloaded record:
    # the run deletes the blob that no record uses any more
    await storage.delete(task_storage_key(WF, "a"))
    version[0] = "v2"
    await flow().start(resume=True)
    assert ran == ["a", "b", "a", "b"]
    assert await keys(storage, blob_prefix(WF)) == [blob_key(WF, blob_of(BIG + "v2"))]


async def test_collect_garbage_keeps_used_and_deletes_orphans(storage: Storage) -> None:
    await build(storage, Steps(a=BIG)).start(resume=True)
    orphan = blob_key(WF, "0" * 64)
    await storage.write(orphan, b'"orphan"')
    assert await collect_garbage(storage, WF, candidates=["1" * 64]) == 0
    assert await collect_garbage(storage, WF) == 1
    assert await keys(storage, blob_prefix(WF)) == [blob_key(WF, blob_of(BIG))]
    # a record that cannot be read might use any blob: nothing is deleted
    await storage.write(orphan, b'"orphan"')
    await storage.write(task_storage_key(WF, "zz"), b"not json")
    assert await collect_garbage(storage, WF) == 0
    assert orphan in await keys(storage, blob_prefix(WF))


async def test_retention_deletes_blobs_with_the_workflow(storage: Storage) -> None:
    await build(storage, Steps(a=BIG)).start(resume=True)
    pruned = await prune(storage, older_than="1s", now=time.time() + 3600)
    assert [p.workflow_id for p in pruned] == [WF]
    assert await keys(storage, f"{WF}/") == []


# --- the size limit -------------------------------------------------------------------


async def test_output_over_the_limit_is_refused_before_anything_is_written(
    storage: Storage,
) -> None:
    steps = Steps(a="small", b="y" * 3000)
    flow = build(storage, steps, max_output_bytes=2000)
    await flow.start(resume=True)
    a, b = flow.result_task()
    assert a.status is TaskStatus.COMPLETED
    assert b.status is TaskStatus.FAILED
    assert isinstance(b.error, SerializationError)
    message = str(b.error)
    assert "step b" in message
    assert "3,002 bytes" in message
    assert "2,000" in message
    assert await keys(storage, f"{WF}/tasks/") == [task_storage_key(WF, "a")]
    assert await keys(storage, blob_prefix(WF)) == []


async def test_deeply_nested_output_is_refused_when_written(storage: Storage) -> None:
    deep: Any = 1
    for _ in range(400):
        deep = (deep,)
    steps = Steps(a=deep)
    flow = build(storage, steps)
    await flow.start(resume=True)
    (task,) = flow.result_task()
    assert task.status is TaskStatus.FAILED
    assert "nested too deeply" in str(task.error)
    assert await keys(storage, f"{WF}/tasks/") == []


def test_limits_are_validated() -> None:
    assert Config().max_output_bytes == DEFAULT_MAX_OUTPUT_BYTES == 64 * 1024 * 1024
    assert Config().offload_over is None
    Config(max_output_bytes=None, offload_over=0)
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ConfigurationError, match="max_output_bytes"):
            Config(max_output_bytes=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="offload_over"):
            Config(offload_over=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="below max_output_bytes"):
        Config(max_output_bytes=10, offload_over=10)


async def test_status_reads_offloaded_records_without_their_blobs(storage: Storage) -> None:
    from asyncflow.reading import read_run

    await build(storage, Steps(a=BIG, b="small")).start(resume=True)
    state = await read_run(storage, WF)
    assert state is not None
    assert [t.key for t in state.tasks] == ["a", "b"]
    assert state.status == "completed"


async def test_blob_gc_and_clear_touch_only_blob_keys_of_the_layout(storage: Storage) -> None:
    await build(storage, Steps(a=BIG)).start(resume=True)
    stranger = f"{WF}/blobs/notes.txt"  # not a SHA-256: not asyncflow's
    await storage.write(stranger, b"mine")
    await storage.write(f"{WF}/tasks/readme.txt", b"not a record")
    assert await collect_garbage(storage, WF) == 0  # the stranger is neither kept nor read
    await build(storage, Steps(a="small")).start(resume=False)
    assert await keys(storage, blob_prefix(WF)) == [stranger]
    await clear_workflow(storage, WF)
    assert stranger in await keys(storage, blob_prefix(WF))


async def test_offload_in_graph_mode_and_task_map(storage: Storage) -> None:
    ran: list[int] = []

    @action
    async def pages() -> Any:
        return [0, 1, 2]

    @action
    async def fetch(initial_context: Context) -> Any:
        ran.append(initial_context.storage)
        return BIG + str(initial_context.storage)

    @action
    async def total(previous_context: Context) -> Any:
        return sum(len(page) for page in previous_context.storage)

    def flow() -> AsyncFlow:
        made = AsyncFlow(config=Config(storage=storage, offload_over=1000), workflow_id=WF)
        made.task.add(step=pages)
        made.task.map(fetch, over="pages", key="fetch")
        made.task.add(step=total, depends_on="fetch")
        return made

    await flow().start(mode="graph", resume=True)
    # one blob per child, one for the map's own record (the list of the three)
    assert len(await keys(storage, blob_prefix(WF))) == 4
    again = flow()
    await again.start(mode="graph", resume=True)
    assert sorted(ran) == [0, 1, 2]
    assert again.result_storage()[-1] == 3 * (len(BIG) + 1)
