"""Cancellation: committed checkpoints stay, the interrupted step has none, resume re-runs it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from asyncflow import AsyncFlow, Config, TaskStatus, action
from asyncflow.providers import Storage

pytestmark = pytest.mark.anyio


class Steps:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.entered = anyio.Event()
        self.block = True

    def make(self, name: str) -> Any:
        async def step() -> str:
            self.ran.append(name)
            if name == "b" and self.block:
                self.entered.set()
                await anyio.sleep_forever()
            return name

        step.__qualname__ = name
        return action(step)

    def flow(self, storage: Storage) -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="cancel-wf")
        for name in "abc":
            flow.task.add(step=self.make(name))
        return flow


async def keys(storage: Storage) -> list[str]:
    return [k async for k in storage.list("cancel-wf/tasks/")]


async def test_outer_cancel_scope_mid_step(storage: Storage) -> None:
    steps = Steps()
    flow = steps.flow(storage)
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        await steps.entered.wait()
        group.cancel_scope.cancel()
    assert [t.status for t in flow.result_task()] == [
        TaskStatus.COMPLETED,
        TaskStatus.CANCELLED,
        TaskStatus.NOT_STARTED,
    ]
    assert flow.status == "cancelled"
    assert await keys(storage) == ["cancel-wf/tasks/a.json"]

    steps.ran.clear()
    steps.block = False
    resumed = steps.flow(storage)
    await resumed.start(resume=True)
    assert steps.ran == ["b", "c"]
    assert resumed.result_storage() == ["a", "b", "c"]


async def test_flow_cancel_mid_step_returns_normally(storage: Storage) -> None:
    steps = Steps()
    flow = steps.flow(storage)

    async def cancel_soon() -> None:
        await steps.entered.wait()
        flow.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(cancel_soon)
        with anyio.fail_after(5):
            await flow.start(resume=True)
    assert flow.status == "cancelled"
    assert flow.result_task()[1].status is TaskStatus.CANCELLED
    assert await keys(storage) == ["cancel-wf/tasks/a.json"]


async def test_cancel_background_run(storage: Storage) -> None:
    steps = Steps()
    flow = steps.flow(storage)
    await flow.start(mode="background", resume=True)
    await steps.entered.wait()
    flow.cancel()
    with anyio.fail_after(5):
        await flow.wait()
    assert flow.status == "cancelled"
    assert await keys(storage) == ["cancel-wf/tasks/a.json"]


async def test_cancel_during_commit_is_all_or_nothing(storage: Storage) -> None:
    """The commit is shielded: a cancel that lands mid-write waits for it."""
    written = anyio.Event()

    class SlowWrites:
        persistent = storage.persistent

        async def write(self, key: str, data: bytes, **kwargs: Any) -> str:
            if "/tasks/" in key:
                written.set()
                await anyio.sleep(0.05)
            return await storage.write(key, data, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(storage, name)

    @action
    async def only() -> dict[str, str]:
        return {"big": "x" * 100_000}

    flow = AsyncFlow(config=Config(storage=SlowWrites()), workflow_id="cancel-wf")  # type: ignore[arg-type]
    flow.task.add(step=only)
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        await written.wait()
        group.cancel_scope.cancel()
    assert flow.result_task()[0].status is TaskStatus.COMPLETED
    again = AsyncFlow(config=Config(storage=storage), workflow_id="cancel-wf")
    again.task.add(step=only)
    await again.start(resume=True)
    assert again.result_task()[0].restored
    assert again.result_storage() == [{"big": "x" * 100_000}]
