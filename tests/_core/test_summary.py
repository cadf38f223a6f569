"""``encode_run``: the ended run's summary, formatted per task without ``TaskRun`` objects."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from asyncflow import AsyncFlow, Config, action
from asyncflow._core.task import TaskStatus
from asyncflow._kernel.shape import RunShape
from asyncflow._kernel.summary import RunSummary, TaskRun, encode_run
from asyncflow.providers import StorageDefault

pytestmark = pytest.mark.anyio


@action
async def ok(previous_context: object) -> int:
    return 1


@action
async def bad(previous_context: object) -> int:
    raise ValueError('broken "quote" \u00e9 \ud800')


async def ünïcode_step(previous_context: object) -> int:
    return 2


def _summary(status: str) -> RunSummary:
    return RunSummary(
        workflow_id="wf",
        run_id="20260101T000000.000000Z-abcdef",
        status=status,
        mode="sequential",
        resume=True,
        started_at=1_700_000_000.25,
        finished_at=1_700_000_001.5,
        host="h\u00f6st",
        pid=42,
        version="1.0",
        forked_from='run "x"',
        shape=RunShape(depends_on={"b": ("a",)}, kinds={"m": "map"}, over={"m": "a"}),
        children=(TaskRun("m.0", "fetch", "completed", 1, 1.0, 2.0),),
        children_omitted=2,
    )


async def test_encode_run_is_byte_for_byte_the_task_run_encoding() -> None:
    flow = AsyncFlow(config=Config(storage=StorageDefault()), workflow_id="wf")
    flow.task.add(ok)
    flow.task.add(action(ünïcode_step))
    flow.task.add(bad, key="failing")
    flow.task.add(ok, key="never-run")
    await flow.start()
    tasks = flow.task.queue
    assert [t.status for t in tasks] == [
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.NOT_STARTED,
    ]
    tasks[1].restored = True  # "skipped"
    tasks[0].started_at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)  # a whole second
    for status in ("completed", "failed", "cancelled"):
        summary = _summary(status)
        full = dataclasses.replace(summary, tasks=tuple(TaskRun.of(t) for t in tasks))
        assert encode_run(summary, tasks) == full.encode()
        assert RunSummary.decode(encode_run(summary, tasks), "x") == full


async def test_encode_run_of_no_tasks() -> None:
    summary = _summary("completed")
    assert encode_run(summary, []) == summary.encode()
