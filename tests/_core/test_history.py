"""Reading runs back: list_workflows over every backend, run_history, crashed runs."""

from __future__ import annotations

import dataclasses

import pytest

from asyncflow import AsyncFlow, Config, action
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.summary import RunSummary, run_summary_key
from asyncflow.providers import Storage
from asyncflow.reading import list_workflows, read_summary, run_history, workflow_ids

pytestmark = pytest.mark.anyio


@action
async def one() -> int:
    return 1


@action
async def boom() -> None:
    raise ValueError("no")


async def run(storage: Storage, workflow_id: str, *, fail: bool = False) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)
    flow.task.add(step=one, key="one")
    if fail:
        flow.task.add(step=boom, key="boom")
    await flow.start(resume=True, on_failure=lambda tasks: None)
    return flow


async def test_list_workflows_reads_each_run_json(storage: Storage) -> None:
    await run(storage, "a-ok")
    await run(storage, "b-bad", fail=True)
    await storage.write("c-corrupt/run.json", b"not json")
    await storage.write("d-no-manifest/tasks/x.json", b"{}")
    assert await workflow_ids(storage) == ["a-ok", "b-bad", "c-corrupt", "d-no-manifest"]
    found = {info.workflow_id: info for info in await list_workflows(storage)}
    assert sorted(found) == ["a-ok", "b-bad", "c-corrupt"]
    assert found["a-ok"].status == "completed"
    assert found["a-ok"].outcomes == {"completed": 1}
    assert found["b-bad"].status == "failed"
    assert found["b-bad"].outcomes == {"completed": 1, "failed": 1}
    assert found["c-corrupt"].status == "unreadable"
    assert found["c-corrupt"].problem is not None


async def test_a_running_run_without_a_runner_is_crashed(storage: Storage) -> None:
    flow = await run(storage, "w")
    blob = await storage.read(manifest_key("w"))
    assert blob is not None
    manifest = Manifest.decode(blob.data, "run.json")
    await storage.write(manifest_key("w"), dataclasses.replace(manifest, status="running").encode())
    assert flow.run_id is not None
    where = run_summary_key("w", flow.run_id)
    summary_blob = await storage.read(where)
    assert summary_blob is not None
    summary = RunSummary.decode(summary_blob.data, where)
    await storage.write(where, dataclasses.replace(summary, status="running").encode())
    (info,) = await list_workflows(storage)
    assert info.status == "crashed"
    (seen,) = await run_history(storage, "w")
    assert seen.status == "crashed"
    one_run = await read_summary(storage, "w", flow.run_id)
    assert one_run is not None
    assert one_run.status == "crashed"
    assert await read_summary(storage, "w", "20990101T000000.000000Z-000000") is None
