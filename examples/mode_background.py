"""Mode ``background``: ``start()`` returns at once; the run goes on beside your code.

    python examples/mode_background.py
    FAIL_STEP=render python examples/mode_background.py
    python examples/mode_background.py                      # resume: only render runs

``await flow.wait()`` joins the run (and raises what it raised); ``flow.cancel()``
stops it. Checkpoints go to $ASYNCFLOW_PATH (default ./.asyncflow).
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
async def crunch() -> int:
    maybe_fail("crunch")
    await anyio.sleep(0.2)
    return 42


@action
async def render(previous_context: Context) -> str:
    maybe_fail("render")
    await anyio.sleep(0.2)
    return f"the answer is {previous_context.storage}"


async def main() -> AsyncFlow:
    storage = StorageFile(os.environ.get("ASYNCFLOW_PATH", ".asyncflow"))
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="mode-background")
    flow.task.add(step=crunch)
    flow.task.add(step=render)
    await flow.start(mode="background", resume=True)  # returns at once
    ticks = 0
    while flow.status in ("new", "running"):  # the loop is free for other work meanwhile
        ticks += 1
        await anyio.sleep(0.05)
    await flow.wait()
    print(f"did other work {'while the flow ran' if ticks > 1 else 'meanwhile'}")
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
