"""Mode ``sequential_group``: one chain per ``group_name``, the chains run concurrently.

    python examples/mode_sequential_group.py
    FAIL_STEP=load_orders python examples/mode_sequential_group.py   # only that chain stops
    python examples/mode_sequential_group.py                         # resume: only it runs

Checkpoints go to $ASYNCFLOW_PATH (default ./.asyncflow).
"""

from __future__ import annotations

import os

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import StorageFile


def maybe_fail(name: str) -> None:
    if os.environ.get("FAIL_STEP") == name:
        raise RuntimeError(f"{name} failed (FAIL_STEP={name})")


@action
async def fetch_orders() -> list[int]:
    maybe_fail("fetch_orders")
    await anyio.sleep(0.05)  # both groups wait at once, not one after the other
    return [120, 80]


@action
async def load_orders(previous_context: Context) -> dict[str, int]:
    maybe_fail("load_orders")
    return {"orders": sum(previous_context.storage)}


@action
async def fetch_customers() -> list[str]:
    maybe_fail("fetch_customers")
    await anyio.sleep(0.05)
    return ["ada", "grace"]


@action
async def load_customers(previous_context: Context) -> dict[str, int]:
    maybe_fail("load_customers")
    return {"customers": len(previous_context.storage)}


async def main() -> AsyncFlow:
    storage = StorageFile(os.environ.get("ASYNCFLOW_PATH", ".asyncflow"))
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="mode-sequential-group")
    # Keys pin each checkpoint to its step, whatever the order of task.add.
    flow.task.add(step=fetch_orders, group_name="orders", key="fetch-orders")
    flow.task.add(step=load_orders, group_name="orders", key="load-orders")
    flow.task.add(step=fetch_customers, group_name="customers", key="fetch-customers")
    flow.task.add(step=load_customers, group_name="customers", key="load-customers")
    await flow.start(mode="sequential_group", resume=True)
    return flow


def report(flow: AsyncFlow) -> None:
    print(f"{flow.workflow_id}: {flow.status}")
    for task in flow.result_task():
        if task.restored:
            outcome = "restored"
        elif task.error is not None:
            outcome = f"failed: {task.error}"
        else:
            outcome = f"{task.status.value.lower()} -> {task.current_context.storage}"
        print(f"  [{task.group_name}] {task.name}: {outcome}")


if __name__ == "__main__":
    flow = anyio.run(main)
    report(flow)
    raise SystemExit(0 if flow.status == "completed" else 1)
