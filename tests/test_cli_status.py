"""``asyncflow status`` on a live run: drawn from run.json's progress index, no task record read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

import asyncflow.cli.status
from asyncflow import AsyncFlow, Config, action
from asyncflow._kernel.layout import manifest_key, task_storage_key
from asyncflow._kernel.lease import Lease
from asyncflow._kernel.manifest import Manifest
from asyncflow.cli import cli
from asyncflow.providers import StorageFile
from asyncflow.reading import record_meta
from tests.counting import CountingStorage

KEYS = ("extract", "transform", "load", "report")


def status(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[str, CountingStorage]:
    opened: list[CountingStorage] = []

    def counting(url: str | None) -> CountingStorage:
        opened.append(CountingStorage(StorageFile(root)))
        return opened[-1]

    monkeypatch.setattr(asyncflow.cli.status, "open_storage", counting)
    result = CliRunner().invoke(cli, ["status", "etl", *args], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.output, opened[0]


def named(name: str) -> Any:
    def step() -> str:
        return name

    step.__qualname__ = name
    return action(step)


def live_run(root: Path) -> tuple[Manifest, Lease]:
    """A run of four tasks as its runner shows it mid-way: two ended, one running, one to go.

    The index entries carry the records' own times, so that a status read
    from the records shows the very same table.
    """

    async def main() -> tuple[Manifest, Lease]:
        storage = StorageFile(root)
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="etl")
        for key in KEYS:
            flow.task.add(step=named(key), key=key)
        await flow.start()
        for key in KEYS[2:]:
            await storage.delete(task_storage_key("etl", key))
        done = []
        for key in KEYS[:2]:
            blob = await storage.read(task_storage_key("etl", key))
            assert blob is not None
            record, _ = record_meta(blob.data, key, "etl", key)
            done.append([key, "completed", record.attempts, record.started_at, record.finished_at])
        where = manifest_key("etl")
        blob = await storage.read(where)
        assert blob is not None
        ended = Manifest.decode(blob.data, where)
        live = ended.replace(
            status="running",
            outcomes={},
            errors={},
            running=("load",),
            progress={"done": done, "errors": {}, "omitted": 0},
        )
        await storage.write(where, live.encode())
        lease = Lease(storage, "etl", ttl=600.0, renew_every=200.0)
        await lease.acquire()  # held by this live process: the run is live
        return live, lease

    return anyio.run(main)


def test_status_of_a_live_run_reads_no_task_record_and_shows_what_the_records_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    live, lease = live_run(root)
    shown, counting = status(root, monkeypatch)
    assert not [key for key in counting.reads if "/tasks/" in key]
    assert "etl/tasks/" not in counting.lists
    assert "workflow etl: running" in shown
    assert "running now: load" in shown
    as_json = json.loads(status(root, monkeypatch, "--format", "json")[0])
    outcomes = {t["key"]: t["status"] for t in as_json["tasks"]}
    assert outcomes == {
        "extract": "completed",
        "transform": "completed",
        "load": "running",
        "report": "pending",
    }

    async def drop_index() -> None:  # run.json as a version before the index wrote it
        await StorageFile(root).write(manifest_key("etl"), live.replace(progress=None).encode())

    anyio.run(drop_index)
    from_records, counting = status(root, monkeypatch)
    assert sorted(key for key in counting.reads if "/tasks/" in key) == [
        "etl/tasks/extract.json",
        "etl/tasks/transform.json",
    ]
    assert from_records.splitlines()[1:] == shown.splitlines()[1:]  # the header has updated_at
    anyio.run(lease.release)


def test_status_of_a_live_run_names_a_failure_the_index_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    live, lease = live_run(root)
    assert live.progress is not None
    error = {"type": "ValueError", "message": "bad row 3", "traceback": "Traceback ..."}
    done = [*live.progress["done"], ["load", "failed", 2, 1.0, 2.0]]
    failing = live.replace(running=("report",), progress={"done": done, "errors": {"load": error}})

    async def write() -> None:
        await StorageFile(root).write(manifest_key("etl"), failing.encode())

    anyio.run(write)
    shown, counting = status(root, monkeypatch)
    assert not [key for key in counting.reads if "/tasks/" in key]
    assert "load (key load) failed: ValueError: bad row 3" in shown
    row = next(line for line in shown.splitlines() if " load " in line and "failed" in line)
    assert " 2 " in row  # its tries
    anyio.run(lease.release)
