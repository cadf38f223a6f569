"""One runner per workflow: the lease, its takeover rules and its loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest

from asyncflow import AsyncFlow, Config, LeaseLost, TaskStatus, WorkflowLocked, action
from asyncflow._kernel.lease import LeaseRecord, process_identity
from asyncflow.providers import Storage

pytestmark = pytest.mark.anyio

KEY = "lease-wf/lease.json"


class Gate:
    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()
        self.ran: list[str] = []

    def flow(self, storage: Storage, **config: Any) -> AsyncFlow:
        @action
        async def first() -> str:
            self.ran.append("first")
            return "first"

        @action
        async def gated() -> str:
            self.ran.append("gated")
            self.entered.set()
            await self.release.wait()
            return "gated"

        flow = AsyncFlow(config=Config(storage=storage, **config), workflow_id="lease-wf")
        flow.task.add(step=first)
        flow.task.add(step=gated)
        return flow


async def lease_record(storage: Storage) -> dict[str, Any]:
    blob = await storage.read(KEY)
    assert blob is not None
    raw: dict[str, Any] = json.loads(blob.data)
    return raw


def foreign(**changes: Any) -> bytes:
    values: dict[str, Any] = {
        "workflow_id": "lease-wf",
        "runner_id": "someone-else",
        "host": "another-host",
        "boot_id": "another-boot",
        "pid": 1,
        "pid_start": "1",
        "generation": 7,
        "acquired_at": time.time(),
        "expires_at": time.time() + 60,
    }
    values.update(changes)
    return LeaseRecord(**values).encode()


async def test_second_runner_is_refused_naming_the_holder(storage: Storage) -> None:
    gate = Gate()
    holder = gate.flow(storage)
    async with anyio.create_task_group() as group:
        group.start_soon(holder.start)
        await gate.entered.wait()
        with pytest.raises(WorkflowLocked) as info:
            await Gate().flow(storage).start(resume=True)
        message = str(info.value)
        assert f"pid {os.getpid()}" in message
        assert "expires at" in message
        gate.release.set()
    assert holder.status == "completed"
    released = await lease_record(storage)
    assert released["released"] is True


async def test_waiting_runner_gets_the_lease_when_it_is_released(storage: Storage) -> None:
    gate = Gate()
    holder = gate.flow(storage)
    second_gate = Gate()
    second_gate.release.set()
    second = second_gate.flow(storage)
    async with anyio.create_task_group() as group:
        group.start_soon(holder.start)
        await gate.entered.wait()
        group.start_soon(lambda: second.start(resume=True, wait_for_lease=10))
        await anyio.sleep(0.1)
        assert second.result_task()[0].status is TaskStatus.NOT_STARTED
        gate.release.set()
    assert second.status == "completed"
    assert second_gate.ran == []  # both restored from the holder's checkpoints
    assert (await lease_record(storage))["generation"] == 2


async def test_wait_with_a_deadline_gives_up(storage: Storage) -> None:
    await storage.write(KEY, foreign())
    flow = Gate().flow(storage)
    start = anyio.current_time()
    with pytest.raises(WorkflowLocked, match="someone-else"):
        await flow.start(wait_for_lease=0.2)
    assert anyio.current_time() - start >= 0.15  # uvloop's clock is cached to the ms


async def test_expired_lease_is_taken_over(storage: Storage) -> None:
    await storage.write(KEY, foreign(expires_at=time.time() - 1))
    gate = Gate()
    gate.release.set()
    flow = gate.flow(storage)
    await flow.start()
    assert flow.status == "completed"
    record = await lease_record(storage)
    assert record["generation"] == 8
    assert record["runner_id"] != "someone-else"


async def test_dead_process_on_this_host_is_taken_over_at_once(storage: Storage) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(child.stdout)
    host, boot, _, _ = process_identity()
    await storage.write(KEY, foreign(host=host, boot_id=boot, pid=dead_pid, pid_start="12345"))
    gate = Gate()
    gate.release.set()
    await gate.flow(storage).start()
    assert (await lease_record(storage))["generation"] == 8


async def test_reused_pid_does_not_fool_the_check(storage: Storage) -> None:
    host, boot, pid, start = process_identity()
    # our own pid, but a different start time: the holder was another process
    await storage.write(KEY, foreign(host=host, boot_id=boot, pid=pid, pid_start="1"))
    gate = Gate()
    gate.release.set()
    await gate.flow(storage).start()
    # our own pid and start time: the holder is alive (it is us), so locked
    await storage.write(KEY, foreign(host=host, boot_id=boot, pid=pid, pid_start=start))
    with pytest.raises(WorkflowLocked):
        await Gate().flow(storage).start()


async def test_live_lease_elsewhere_is_respected(storage: Storage) -> None:
    await storage.write(KEY, foreign())
    with pytest.raises(WorkflowLocked, match="another-host"):
        await Gate().flow(storage).start()


async def test_lost_lease_stops_before_the_next_commit(storage: Storage) -> None:
    gate = Gate()
    flow = gate.flow(storage, lease_ttl=5.0, lease_renew=0.05)
    caught: list[BaseException] = []

    async def run() -> None:
        try:
            await flow.start()
        except LeaseLost as exc:
            caught.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await gate.entered.wait()
        await storage.write(KEY, foreign(expires_at=time.time() + 60))  # a takeover
    assert len(caught) == 1
    assert "changed by another runner" in str(caught[0])
    assert flow.result_task()[1].status is TaskStatus.CANCELLED
    assert [k async for k in storage.list("lease-wf/tasks/")] == ["lease-wf/tasks/first.json"]
    assert (await lease_record(storage))["runner_id"] == "someone-else"  # not released over


async def test_lease_released_after_failure_and_cancellation(storage: Storage) -> None:
    @action
    async def bad() -> None:
        raise RuntimeError("x")

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="lease-wf")
    flow.task.add(step=bad)
    await flow.start()
    assert (await lease_record(storage))["released"] is True

    gate = Gate()
    flow = gate.flow(storage)
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        await gate.entered.wait()
        group.cancel_scope.cancel()
    assert (await lease_record(storage))["released"] is True
    after = Gate()
    after.release.set()
    with anyio.fail_after(5):
        await after.flow(storage).start(resume=True)  # not locked
    assert after.ran == ["gated"]


async def test_renewal_keeps_a_long_run_alive(storage: Storage) -> None:
    gate = Gate()
    flow = gate.flow(storage, lease_ttl=0.3, lease_renew=0.05)
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        await gate.entered.wait()
        await anyio.sleep(0.6)  # twice the ttl: only renewals keep it
        with pytest.raises(WorkflowLocked):
            await Gate().flow(storage).start()
        gate.release.set()
    assert flow.status == "completed"


async def test_renewal_whose_answer_was_lost_is_not_a_lost_lease(storage: Storage) -> None:
    """A renewal that landed but whose reply was lost must not look like a takeover."""
    gate = Gate()
    flow = gate.flow(storage, lease_ttl=5.0, lease_renew=0.05)
    async with anyio.create_task_group() as group:
        group.start_soon(flow.start)
        await gate.entered.wait()
        # rewrite our own record unchanged but with a new version, as a renewal
        # whose answer never arrived would have
        blob = await storage.read(KEY)
        assert blob is not None
        record = json.loads(blob.data)
        record["expires_at"] += 0.5
        await storage.write(KEY, json.dumps(record).encode())
        await anyio.sleep(0.3)  # several renewals
        gate.release.set()
    assert flow.status == "completed"


def test_lease_record_encodes_every_field_in_order() -> None:
    """The lease's bytes are ``json.dumps`` of its fields in declaration order."""
    import dataclasses
    import json

    from asyncflow._kernel.lease import LeaseRecord

    record = LeaseRecord("wf", "runner", "host", "boot", 12, "345", 3, 1.5, 2.5, released=True)
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(LeaseRecord)}
    assert record.encode() == json.dumps({"asyncflow": 1, "kind": "lease", **fields}).encode()
    assert LeaseRecord.decode(record.encode(), "lease") == record
