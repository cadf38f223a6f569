"""Retention: ``prune``, ``Config(retention=...)`` in the scheduler, ``clear --older-than``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from click.testing import CliRunner

from asyncflow import AsyncFlow, Config, ConfigurationError, action, prune
from asyncflow._kernel.durations import parse_duration
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.lease import Lease
from asyncflow._kernel.manifest import Manifest
from asyncflow.cli import cli
from asyncflow.providers import Storage, StorageDefault, StorageFile
from asyncflow.schedule import ManualClock, Scheduler

DAY = 86400.0


@pytest.fixture(params=["memory", "file"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    made: Storage = StorageDefault() if request.param == "memory" else StorageFile(tmp_path / "s")
    try:
        yield made
    finally:
        await made.aclose()


async def make(storage: Storage, workflow_id: str, *, fail: bool = False, days: float = 0) -> None:
    """A finished two-step run of ``workflow_id``, its run.json aged ``days``."""
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)

    @action
    async def one() -> int:
        return 1

    @action
    async def two() -> int:
        if fail:
            raise RuntimeError("no")
        return 2

    flow.task.add(step=one)
    flow.task.add(step=two)
    await flow.start()
    if days:
        await age(storage, workflow_id, days)


async def age(storage: Storage, workflow_id: str, days: float, status: str | None = None) -> None:
    where = manifest_key(workflow_id)
    blob = await storage.read(where)
    assert blob is not None
    manifest = Manifest.decode(blob.data, where)
    changes: dict[str, Any] = {"updated_at": time.time() - days * DAY}
    if status is not None:
        changes["status"] = status
    await storage.write(where, dataclasses.replace(manifest, **changes).encode())


async def keys(storage: Storage, prefix: str = "") -> list[str]:
    return [key async for key in storage.list(prefix)]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 7 * DAY),
        ("12h", 43200),
        ("1d12h", 1.5 * DAY),
        ("30m", 1800),
        ("45s", 45),
        ("2w", 14 * DAY),
        ("90", 90),
        (" 1.5h ", 5400),
        (dt.timedelta(hours=2), 7200),
        (5, 5),
    ],
)
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "7 days", "d", "-1d", "0", "1y", None, True, float("inf")])
def test_parse_duration_refuses(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        parse_duration(bad)


def test_config_retention_is_validated() -> None:
    assert Config(retention="7d").retention_seconds == 7 * DAY
    assert Config().retention_seconds is None
    with pytest.raises(ConfigurationError, match="duration"):
        Config(retention="forever")


@pytest.mark.anyio
async def test_prune_deletes_old_finished_workflows_and_keeps_the_rest(store: Storage) -> None:
    await make(store, "old-done", days=10)
    await make(store, "old-failed", fail=True, days=10)
    await make(store, "recent", days=1)
    await make(store, "crashed", days=10)
    await age(store, "crashed", 10, status="running")  # a crash: run.json never finished
    await make(store, "locked", days=10)
    holder = Lease(store, "locked", ttl=60.0, renew_every=20.0)
    await holder.acquire()
    await store.write("corrupt/run.json", b"not json")

    would = await prune(store, "7d", dry_run=True)
    assert [(p.workflow_id, p.status) for p in would] == [
        ("old-done", "completed"),
        ("old-failed", "failed"),
    ]
    assert would[0].records == 4  # run.json, its run summary, two task records (not the lease)
    assert await keys(store, "old-done/")  # a dry run deletes nothing

    done = await prune(store, dt.timedelta(days=7))
    assert [p.workflow_id for p in done] == ["old-done", "old-failed"]
    assert await keys(store, "old-done/") == []  # lease included
    assert await keys(store, "old-failed/") == []
    for kept in ("recent", "crashed", "locked", "corrupt"):
        assert await keys(store, f"{kept}/"), kept

    await holder.release()
    interrupted = await prune(store, "7d", include_interrupted=True)
    assert [p.workflow_id for p in interrupted] == ["crashed", "locked"]
    assert await keys(store, "recent/")
    assert await keys(store, "corrupt/")  # unreadable: never deleted


@pytest.mark.anyio
async def test_prune_within_a_prefix_and_a_filter(store: Storage) -> None:
    for workflow_id in ("wf", "wf.20250101T0000Z", "wf2", "other"):
        await make(store, workflow_id, days=30)
    done = await prune(store, "1d", prefix="wf", only=lambda w: w == "wf" or w.startswith("wf."))
    assert [p.workflow_id for p in done] == ["wf", "wf.20250101T0000Z"]
    assert {key.partition("/")[0] for key in await keys(store)} == {"wf2", "other"}


@pytest.mark.anyio
async def test_the_scheduler_applies_config_retention_to_its_own_workflows() -> None:
    storage = StorageDefault()
    await make(storage, "wf.20250101T0000Z", days=3)  # an old tick's run of this schedule
    await make(storage, "wf.20250101T0001Z", fail=True, days=0.5)  # within the retention
    await make(storage, "unrelated", days=3)
    flow = AsyncFlow(config=Config(storage=storage, retention="2d"), workflow_id="wf")
    flow.task.add(step=lambda: 1)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    clock = ManualClock(t0)
    scheduler = Scheduler(flow, "* * * * *", overlap="parallel", clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        while clock.sleepers == 0:
            await anyio.lowlevel.checkpoint()
        await clock.set(t0 + dt.timedelta(minutes=1))
        for _ in range(10_000):
            if not await keys(storage, "wf.20250101T0000Z/"):
                break
            await anyio.sleep(0)
        group.cancel_scope.cancel()
    assert [r.status for r in scheduler.runs] == ["completed"]
    workflows = {key.partition("/")[0] for key in await keys(storage)}
    assert workflows == {"wf.20250101T0001Z", "wf.20260101T0001Z", "unrelated"}


def cli_clear(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["clear", *args])
    return result.exit_code, result.stdout, result.stderr


def test_clear_older_than_on_the_command_line(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"

    async def setup() -> None:
        storage = StorageFile(tmp_path / "store")
        await make(storage, "old", days=8)
        await make(storage, "new", days=1)
        await storage.aclose()

    anyio.run(setup)
    code, out, err = cli_clear("--older-than", "7d", "--storage", url, "--dry-run")
    assert code == 0, err
    assert "old  completed  updated" in out
    assert "dry run: would delete 1 workflow(s)" in out
    assert (tmp_path / "store" / "old" / "run.json").exists()

    code, out, err = cli_clear("--older-than", "7d", "--storage", url, "--yes")
    assert code == 0, err
    assert "deleted 1 workflow(s) older than 7d" in out
    assert list((tmp_path / "store" / "old").rglob("*.json")) == []  # records and lease
    assert (tmp_path / "store" / "new" / "run.json").exists()

    code, out, _ = cli_clear("--older-than", "7d", "--storage", url, "--yes")
    assert code == 0
    assert "nothing to clear" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing ID"),
        (["wf", "--older-than", "7d"], "not both"),
        (["--older-than", "soon"], "not a duration"),
        (["--older-than", "7d", "--force"], "--force does not go with --older-than"),
        (["wf", "--dry-run"], "go with --older-than"),
    ],
)
def test_clear_older_than_usage_errors(args: list[str], message: str) -> None:
    code, _, err = cli_clear(*args, "--storage", "memory://")
    assert code == 2, err
    assert message in err


@pytest.mark.anyio
async def test_prune_takes_the_run_history_with_the_workflow(store: Storage) -> None:
    await make(store, "gone", days=10)
    assert await keys(store, "gone/runs/")
    await prune(store, "7d")
    assert await keys(store, "gone/") == []


@pytest.mark.anyio
async def test_prune_drops_old_runs_of_a_kept_workflow_but_never_the_latest(
    store: Storage,
) -> None:
    for _ in range(3):
        await make(store, "kept")
    await age(store, "kept", 0, status="running")  # interrupted: kept by retention
    blob = await store.read(manifest_key("kept"))
    assert blob is not None
    latest = Manifest.decode(blob.data, "run.json").run_id
    assert len(await keys(store, "kept/runs/")) == 3
    await prune(store, "1h", now=time.time() + 2 * 3600)
    assert await keys(store, "kept/runs/") == [f"kept/runs/{latest}.json"]
    assert await keys(store, "kept/tasks/")


@pytest.mark.anyio
async def test_prune_treats_a_reset_run_like_a_forked_one_and_keeps_a_waiting_one() -> None:
    store = StorageDefault()
    await make(store, "old-reset", days=10)
    await age(store, "old-reset", 10, status="reset")  # prepared for a resume, never run since
    await make(store, "old-waiting", days=10)
    await age(store, "old-waiting", 10, status="waiting")  # parked: still in progress
    done = await prune(store, "7d")
    assert [(p.workflow_id, p.status) for p in done] == [("old-reset", "reset")]
    assert await keys(store, "old-waiting/")
