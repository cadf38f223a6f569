"""Packs (DESIGN §15): an ended run's records in one object, on every storage backend.

A resume reads the pack instead of one object per record, and takes an
entry only while one listing of ``tasks/`` proves it is still its record.
"""

from __future__ import annotations

from typing import Any

import pytest

from asyncflow import AsyncFlow, CheckpointCorrupt, Config, Context, action, clear, fork, reset
from asyncflow._kernel.capabilities import list_versions
from asyncflow._kernel.layout import pack_key, task_prefix, task_storage_key
from asyncflow._kernel.pack import decode_pack
from asyncflow.providers import Storage
from asyncflow.reading import read_run
from tests.counting import CountingStorage

pytestmark = pytest.mark.anyio

WF = "packed-wf"
KEY = b"pack-signing-key-0123456789"


class Steps:
    """A chain of steps that count their real executions; ``value`` feeds the first."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.value = 1

    def step(self, name: str) -> Any:
        async def body(previous_context: Context) -> Any:
            self.ran.append(name)
            before = previous_context.storage
            return self.value if before is None else before + 1

        body.__qualname__ = name
        return action(body)


def chain(storage: Storage, steps: Steps, n: int = 6, **config: Any) -> AsyncFlow:
    flow = AsyncFlow(
        config=Config(storage=storage, **{"pack_min_records": 2, **config}), workflow_id=WF
    )
    for i in range(n):
        flow.task.add(step=steps.step(f"s{i}"))
    return flow


async def packed(storage: Storage, workflow_id: str = WF, key: bytes | None = None) -> Any:
    blob = await storage.read(pack_key(workflow_id))
    assert blob is not None, "no pack was written"
    return decode_pack(blob.data, pack_key(workflow_id), workflow_id, key)


async def test_an_ended_run_packs_each_record_with_its_listing_token(storage: Storage) -> None:
    steps = Steps()
    await chain(storage, steps).start()
    pack = await packed(storage)
    assert pack.status == "completed"
    tokens = await list_versions(storage, task_prefix(WF))
    assert tokens is not None
    assert sorted(pack.entries) == [f"s{i}" for i in range(6)]
    for key, (token, data) in pack.entries.items():
        where = task_storage_key(WF, key)
        assert tokens[where] == token
        blob = await storage.read(where)  # the records stay where they are
        assert blob is not None
        assert blob.data == data


async def test_a_resume_reads_the_pack_not_each_record(storage: Storage) -> None:
    steps = Steps()
    await chain(storage, steps).start()
    counting = CountingStorage(storage)
    steps.ran.clear()
    flow = chain(counting, steps)  # type: ignore[arg-type]
    await flow.start(resume=True)
    assert steps.ran == []
    assert flow.task.queue[-1].current_context.storage == 6
    assert counting.records_read() == []
    assert counting.reads.count(pack_key(WF)) == 1
    assert len(counting.reads) <= 5  # the ended run's resume: GETs, whatever the records


async def test_a_resume_of_a_run_still_current_rewrites_no_pack(storage: Storage) -> None:
    steps = Steps()
    await chain(storage, steps).start()
    before = await storage.read(pack_key(WF))
    await chain(storage, steps).start(resume=True)
    after = await storage.read(pack_key(WF))
    assert before is not None
    assert after is not None
    assert after.data == before.data


async def test_a_record_rewritten_after_its_pack_is_read_from_its_key(storage: Storage) -> None:
    """An old pack put back over a newer record: the listing's token tells them apart."""
    steps = Steps()
    await chain(storage, steps).start()
    old = await storage.read(pack_key(WF))
    assert old is not None
    steps.value = 100
    await reset(storage, WF, "s0")
    await chain(storage, steps).start(resume=True)  # rewrites every record, and the pack
    await storage.write(pack_key(WF), old.data)
    steps.ran.clear()
    flow = chain(storage, steps)
    await flow.start(resume=True)
    assert steps.ran == []
    assert flow.task.queue[-1].current_context.storage == 105  # not 6, the old pack's


async def test_records_reset_never_come_back_from_the_pack(storage: Storage) -> None:
    steps = Steps()
    await chain(storage, steps).start()
    await reset(storage, WF, "s3")
    steps.ran.clear()
    await chain(storage, steps).start(resume=True)
    assert steps.ran == ["s3", "s4", "s5"]


async def test_rerun_from_never_restores_from_the_pack(storage: Storage) -> None:
    steps = Steps()
    await chain(storage, steps).start()
    steps.ran.clear()
    await chain(storage, steps).start(resume=True, rerun_from="s4")
    assert steps.ran == ["s4", "s5"]
    pack = await packed(storage)
    tokens = await list_versions(storage, task_prefix(WF))
    assert tokens is not None
    assert {k: t for k, (t, _) in pack.entries.items()} == {
        k: tokens[task_storage_key(WF, k)] for k in pack.entries
    }


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
async def test_a_torn_or_altered_pack_is_corrupt_never_a_rerun(
    storage: Storage, damage: str
) -> None:
    steps = Steps()
    await chain(storage, steps).start()
    blob = await storage.read(pack_key(WF))
    assert blob is not None
    data = blob.data
    if damage == "flip":
        middle = len(data) - 40
        data = data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = b""
    await storage.write(pack_key(WF), data)
    steps.ran.clear()
    with pytest.raises(CheckpointCorrupt, match=r"packed-wf/pack/tasks\.pack") as caught:
        await chain(storage, steps).start(resume=True)
    assert caught.value.key == pack_key(WF)
    assert steps.ran == []


async def test_a_signed_pack_refuses_another_key_and_an_unsigned_one(storage: Storage) -> None:
    steps = Steps()
    await chain(storage, steps, signing_key=KEY).start()
    blob = await storage.read(pack_key(WF))
    assert blob is not None
    assert blob.data.startswith(b"asyncflow-hmac-sha256:")
    steps.ran.clear()
    await chain(storage, steps, signing_key=KEY).start(resume=True)
    assert steps.ran == []
    with pytest.raises(CheckpointCorrupt, match=r"pack/tasks\.pack has a bad signature"):
        await chain(storage, steps, signing_key=b"another-key-0123456789").start(resume=True)
    unsigned = blob.data.partition(b"\n")[2]  # a valid digest, but the signature stripped
    await storage.write(pack_key(WF), unsigned)
    with pytest.raises(CheckpointCorrupt, match=r"pack/tasks\.pack is not signed"):
        await chain(storage, steps, signing_key=KEY).start(resume=True)
    assert steps.ran == []


async def test_offloaded_outputs_stay_in_blobs_and_are_referenced(storage: Storage) -> None:
    big = "x" * 50_000

    @action
    async def large() -> str:
        return big

    flow = AsyncFlow(
        config=Config(storage=storage, pack_min_records=1, offload_over=1000), workflow_id=WF
    )
    flow.task.add(step=large)
    await flow.start()
    blob = await storage.read(pack_key(WF))
    assert blob is not None
    assert len(blob.data) < 5_000
    again = AsyncFlow(
        config=Config(storage=storage, pack_min_records=1, offload_over=1000), workflow_id=WF
    )
    again.task.add(step=large)
    await again.start(resume=True)
    assert again.task.queue[0].restored
    assert again.task.queue[0].current_context.storage == big


async def test_clear_and_a_fresh_run_delete_the_pack(storage: Storage) -> None:
    steps = Steps()
    await chain(storage, steps).start()
    await chain(storage, steps, pack_min_records=None).start()  # fresh: no new pack
    assert await storage.read(pack_key(WF)) is None
    await chain(storage, steps).start()
    assert await storage.read(pack_key(WF)) is not None
    await clear(storage, WF)
    assert [key async for key in storage.list(f"{WF}/")] == []


async def test_a_fork_copies_through_the_pack_and_packs_its_copies(storage: Storage) -> None:
    steps = Steps()
    await chain(storage, steps, n=70).start()
    counting = CountingStorage(storage)
    copied = await fork(counting, WF, "forked-wf", from_key="s65")  # type: ignore[arg-type]
    assert copied == [f"s{i}" for i in range(65)]
    assert counting.records_read() == []  # every source record came from the pack
    pack = await packed(storage, "forked-wf")
    assert sorted(pack.entries) == sorted(copied)
    steps.ran.clear()
    again = CountingStorage(storage)
    flow = AsyncFlow(config=Config(storage=again), workflow_id="forked-wf")  # type: ignore[arg-type]
    for i in range(70):
        flow.task.add(step=steps.step(f"s{i}"))
    await flow.start(resume=True)
    assert steps.ran == [f"s{i}" for i in range(65, 70)]
    assert again.records_read() == []


async def test_the_read_model_reads_an_ended_run_from_its_pack(storage: Storage) -> None:
    steps = Steps()
    steps.value = 0
    flow = chain(storage, steps, n=30)
    await flow.start()
    manifest = await storage.read(f"{WF}/run.json")
    assert manifest is not None
    # a run.json of a run that crashed midway: the reader must look at the records
    await storage.write(
        f"{WF}/run.json", manifest.data.replace(b'"status":"completed"', b'"status":"running"')
    )
    counting = CountingStorage(storage)
    state = await read_run(counting, WF)  # type: ignore[arg-type]
    assert state is not None
    assert [task.status for task in state.tasks] == ["completed"] * 30
    assert counting.records_read() == []


async def test_a_storage_without_versioned_listings_packs_nothing(storage: Storage) -> None:
    class Plain:
        list_versions = None

        def __init__(self, inner: Storage) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    steps = Steps()
    await chain(Plain(storage), steps).start()  # type: ignore[arg-type]
    assert await storage.read(pack_key(WF)) is None
    steps.ran.clear()
    await chain(Plain(storage), steps).start(resume=True)  # type: ignore[arg-type]
    assert steps.ran == []


async def test_a_map_restores_its_children_from_the_pack(storage: Storage) -> None:
    ran: list[int] = []

    @action
    async def items() -> list[int]:
        return list(range(12))

    @action
    async def double(initial_context: Context) -> int:
        ran.append(initial_context.storage)
        return 2 * initial_context.storage

    def build(target: Storage) -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=target, pack_min_records=2), workflow_id="map-wf")
        flow.task.add(step=items, key="items")
        flow.task.map(double, over="items", key="double")
        return flow

    first = build(storage)
    await first.start(mode="graph")
    assert len((await packed(storage, "map-wf")).entries) == 14  # items, double, 12 children
    # as if the run had crashed before the map's own record: it expands again
    await storage.delete(task_storage_key("map-wf", "double"))
    ran.clear()
    counting = CountingStorage(storage)
    again = build(counting)  # type: ignore[arg-type]
    await again.start(resume=True, mode="graph")
    assert ran == []
    assert again.task.queue[-1].current_context.storage == [2 * i for i in range(12)]
    assert counting.records_read() == []


@pytest.mark.parametrize(("durability", "mode"), [("async", "sequential"), ("batch", "parallel")])
async def test_every_durability_packs_what_landed(
    storage: Storage, durability: str, mode: str
) -> None:
    steps = Steps()
    await chain(storage, steps, n=12, durability=durability).start(mode=mode)
    assert len((await packed(storage)).entries) == 12
    counting = CountingStorage(storage)
    steps.ran.clear()
    await chain(counting, steps, n=12, durability=durability).start(  # type: ignore[arg-type]
        resume=True, mode=mode
    )
    assert steps.ran == []
    assert counting.records_read() == []
