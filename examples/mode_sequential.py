"""Mode ``sequential``: one chain, each step gets the previous step's output.

    python examples/mode_sequential.py                      # runs extract, transform, load
    FAIL_STEP=load python examples/mode_sequential.py       # load fails; two checkpoints saved
    python examples/mode_sequential.py                      # resume: only load runs

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
async def extract() -> list[int]:
    maybe_fail("extract")
    return [3, 1, 2]


@action
async def transform(previous_context: Context) -> list[int]:
    maybe_fail("transform")
    return sorted(previous_context.storage)


@action
async def load(previous_context: Context) -> dict[str, int]:
    maybe_fail("load")
    return {"loaded": len(previous_context.storage)}


async def main() -> AsyncFlow:
    storage = StorageFile(os.environ.get("ASYNCFLOW_PATH", ".asyncflow"))
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="mode-sequential")
    flow.task.add(step=extract)
    flow.task.add(step=transform)
    flow.task.add(step=load)
    await flow.start(mode="sequential", resume=True)
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
        print(f"  {task.name}: {outcome}")


if __name__ == "__main__":
    flow = anyio.run(main)
    report(flow)
    raise SystemExit(0 if flow.status == "completed" else 1)
