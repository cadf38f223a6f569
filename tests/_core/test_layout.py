"""Only our own records: every deleting path touches keys of the layout and nothing else."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pytest

from asyncflow import AsyncFlow, Config, action, prune
from asyncflow._core.records import clear_workflow
from asyncflow._kernel.layout import (
    blob_key,
    is_own_key,
    lease_key,
    manifest_key,
    own_keys,
    run_summary_key,
    signal_key,
    signal_prefix,
    task_key_of,
    task_storage_key,
    wait_key,
    wait_prefix,
    workflow_of_manifest,
)
from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import Storage

pytestmark = pytest.mark.anyio

OWN = [
    "wf/run.json",
    "wf/lease.json",
    "wf/tasks/0.json",
    "wf/tasks/load.v2.json",
    "wf/runs/20260101T000000Z-ab12.json",
    "wf/signals/approve.json",
    "wf/waits/approval.json",
    "wf/blobs/" + "ab" * 32,
]
#: beside the records, under names a careless prefix match would take
FOREIGN = [
    "wf/invoice.pdf",
    "wf/run.json.bak",
    "wf/tasks/notes.txt",
    "wf/tasks/sub/0.json",
    "wf/runs/summary.txt",
    "wf/blobs/not-a-digest",
    "wf/waits/notes.txt",
    "wf/src/main.py",
    "wf.v2/run.json",
    "wf.v2/tasks/0.json",
    "wfx/run.json",
]


def test_the_layout_builds_the_documented_keys() -> None:
    assert manifest_key("wf") == "wf/run.json"
    assert lease_key("wf") == "wf/lease.json"
    assert task_storage_key("wf", "k") == "wf/tasks/k.json"
    assert run_summary_key("wf", "r1") == "wf/runs/r1.json"
    assert signal_key("wf", "go") == "wf/signals/go.json"
    assert signal_prefix("wf") == "wf/signals/"
    assert wait_key("wf", "k") == "wf/waits/k.json"
    assert wait_prefix("wf") == "wf/waits/"
    assert blob_key("wf", "0" * 64) == "wf/blobs/" + "0" * 64


def test_is_own_key_is_exact() -> None:
    assert all(is_own_key("wf", key) for key in OWN)
    assert not any(is_own_key("wf", key) for key in FOREIGN)
    assert is_own_key("wf.v2", "wf.v2/run.json")
    assert not is_own_key("wf.v2", "wf/run.json")
    assert task_key_of("wf", "wf/tasks/load.v2.json") == "load.v2"
    assert task_key_of("wf", "wf/tasks/notes.txt") is None
    assert task_key_of("wf", "wf/run.json") is None
    assert workflow_of_manifest("nightly.v2/run.json") == "nightly.v2"
    assert workflow_of_manifest("a/b/run.json") is None
    assert own_keys("wf", [*OWN, *FOREIGN]) == [k for k in OWN if k != "wf/lease.json"]
    assert own_keys("wf", OWN, tasks_only=True) == ["wf/tasks/0.json", "wf/tasks/load.v2.json"]


async def _seed(storage: Storage) -> None:
    for key in [*OWN, *FOREIGN]:
        await storage.write(key, b"{}")


async def _keys(storage: Storage) -> list[str]:
    return [key async for key in storage.list("")]


async def test_clear_workflow_deletes_only_the_layouts_keys(storage: Storage) -> None:
    await _seed(storage)
    assert await clear_workflow(storage, "wf") == len(OWN) - 1
    assert await _keys(storage) == sorted([*FOREIGN, "wf/lease.json"])


async def test_clear_workflow_tasks_only_keeps_foreign_files_in_tasks(storage: Storage) -> None:
    await _seed(storage)
    # the task records, and the blob: with the records gone nothing uses it (issue 17)
    assert await clear_workflow(storage, "wf", tasks_only=True) == 3
    left = await _keys(storage)
    assert "wf/blobs/" + "ab" * 32 not in left
    assert "wf/blobs/not-a-digest" in left
    assert "wf/tasks/notes.txt" in left
    assert "wf/tasks/sub/0.json" in left
    assert "wf/tasks/0.json" not in left
    assert "wf/run.json" in left


def _flow(storage: Storage, workflow_id: str = "wf") -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)

    @action
    async def one() -> int:
        return 1

    flow.task.add(step=one)
    return flow


async def test_a_fresh_run_deletes_only_task_records(storage: Storage) -> None:
    await _seed(storage)
    await storage.delete("wf/lease.json")
    await storage.delete("wf/run.json")  # not a manifest
    await _flow(storage).start(resume=False)
    left = await _keys(storage)
    assert set(FOREIGN) <= set(left)
    assert "wf/tasks/one.json" in left  # the new run's record of its one task (key: the step name)
    assert "wf/tasks/0.json" not in left
    assert "wf/tasks/load.v2.json" not in left


async def test_prune_deletes_only_the_layouts_keys(storage: Storage) -> None:
    await _flow(storage).start()
    for key in FOREIGN:
        await storage.write(key, b"{}")
    where = manifest_key("wf")
    blob = await storage.read(where)
    assert blob is not None
    old = dataclasses.replace(Manifest.decode(blob.data, where), updated_at=time.time() - 9e5)
    await storage.write(where, old.encode())
    pruned = await prune(storage, "7d", only=lambda wid: wid == "wf")
    assert [(p.workflow_id, p.records) for p in pruned] == [("wf", 3)]  # + its run summary
    assert await _keys(storage) == sorted(FOREIGN)


def test_scheduler_retention_matches_only_the_ids_it_makes() -> None:
    from asyncflow.schedule import Scheduler

    flow = AsyncFlow(config=Config(retention="2d"), workflow_id="nightly")
    flow.task.add(step=lambda: 1)
    scheduler = Scheduler(flow, "* * * * *", overlap="parallel")
    made = scheduler.run_id(dt.datetime(2026, 1, 1, 3, 4, tzinfo=dt.timezone.utc))
    assert scheduler.owns("nightly")
    assert scheduler.owns(made)
    assert scheduler.owns("nightly.20260101T030405Z")
    for other in ("nightly.v2", "nightly.20260101T0304Z.bak", "nightlyx", "nightly.", "x.nightly"):
        assert not scheduler.owns(other), other
