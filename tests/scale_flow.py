"""One flow file, run unchanged in-process and on a Dask cluster (tests/test_dask.py),
and the runner child of the many-runners test (``python tests/scale_flow.py race ...``).

Nothing in here knows where it runs: ``build_*`` take a ``Config``, and the
caller decides whether it has ``executor=DaskExecutor(...)`` or not.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import anyio

from asyncflow import AsyncFlow, Config, Context, action


@action
async def extract(initial_context: Context) -> dict[str, Any]:
    await anyio.sleep(0)
    return {"rows": list(range(initial_context.storage)), "pid": os.getpid()}


@action(retry=2)
def transform(previous_context: Context) -> dict[str, Any]:
    rows = previous_context.storage["rows"]
    return {"squares": [r * r for r in rows], "pid": os.getpid()}


@action
class Load:
    """A class step: its methods run in source order, each fed the previous one's output."""

    def __init__(self, previous_context: Context) -> None:
        self.squares = previous_context.storage["squares"]

    @action
    async def total(self) -> int:
        await anyio.sleep(0)
        return sum(self.squares)

    @action
    def report(self, previous_context: Context) -> str:
        return f"{len(self.squares)} rows, total {previous_context.storage}"


def build_etl(config: Config, workflow_id: str, rows: int = 5) -> AsyncFlow:
    flow = AsyncFlow(config=config, workflow_id=workflow_id)
    flow.task.add(step=extract, initial_context=rows)
    flow.task.add(step=transform)
    flow.task.add(step=Load)
    return flow


@action
def square(initial_context: Context) -> dict[str, int]:
    """One of many parallel tasks; logs every completed execution to a file."""
    i, log, pause = initial_context.storage
    time.sleep(pause)
    with open(log, "a") as handle:  # O_APPEND: whole short lines, across processes
        handle.write(f"{i}\n")
    return {"i": i, "square": i * i}


def build_fan_out(config: Config, workflow_id: str, n: int, log: str, pause: float) -> AsyncFlow:
    flow = AsyncFlow(config=config, workflow_id=workflow_id)
    for i in range(n):
        flow.task.add(step=square, initial_context=[i, log, pause])
    return flow


@action
async def slow_step(initial_context: Context) -> int:
    i, log = initial_context.storage
    await anyio.sleep(0.4)
    with open(log, "a") as handle:
        handle.write(f"{i} {os.getpid()} {time.time():.3f}\n")
    return i


#: the runners' lease: short so the takeover test is fast, long enough that the
#: test can see the dead runner's lease still live right after the SIGKILL
RACE_LEASE_TTL = 4.0


async def race(url: str, workflow_id: str, log: str, role: str) -> int:
    """A runner process of the many-runners test. Exit 0 done, 3 WorkflowLocked."""
    from asyncflow import WorkflowLocked
    from asyncflow._kernel import lease
    from asyncflow.providers import storage_from_url

    if role == "remote":
        # Stand in for a runner on another machine: the lease record names a host
        # that is not this one, so no runner here can prove it dead and take over
        # early; only the lease's expiry frees the workflow.
        lease._identity = ("runner-on-another-host", "boot-of-another-host", os.getpid(), "1")
    async with storage_from_url(url) as storage:
        config = Config(storage=storage, lease_ttl=RACE_LEASE_TTL, lease_renew=0.5)
        flow = AsyncFlow(config=config, workflow_id=workflow_id)
        for i in range(8):
            flow.task.add(step=slow_step, initial_context=[i, log])
        started = time.time()
        try:
            await flow.start(resume=True, wait_for_lease=(role == "waiter") and 30)
        except WorkflowLocked as error:
            print(f"locked: {error}", flush=True)
            return 3
        restored = [t.task_id for t in flow.result_task() if t.restored]
        print(f"status {flow.status} waited {time.time() - started:.2f} restored {restored}")
        return 0


if __name__ == "__main__" and sys.argv[1:2] == ["race"]:
    sys.exit(anyio.run(race, *sys.argv[2:6]))
