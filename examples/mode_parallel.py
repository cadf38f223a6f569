"""Mode ``parallel``: every task on its own, at most ``max_concurrency`` at once.

    python examples/mode_parallel.py
    FAIL_STEP=fetch:c python examples/mode_parallel.py     # one task fails, the others are saved
    python examples/mode_parallel.py                       # resume: only fetch:c runs again

Each task gets its own ``initial_context`` and is checkpointed on its own, so a
resumed parallel run skips every task that finished (Dotflow's cannot).
Checkpoints go to $ASYNCFLOW_PATH (default ./.asyncflow).
"""

from __future__ import annotations

import os

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import StorageFile

PAGES = ["a", "b", "c", "d"]


@action(retry=2)
async def fetch(initial_context: Context) -> dict[str, object]:
    page = initial_context.storage
    if os.environ.get("FAIL_STEP") == f"fetch:{page}":
        raise RuntimeError(f"page {page} is unavailable (FAIL_STEP=fetch:{page})")
    await anyio.sleep(0.05)
    return {"page": page, "size": len(page) * 100}


async def main() -> AsyncFlow:
    storage = StorageFile(os.environ.get("ASYNCFLOW_PATH", ".asyncflow"))
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="mode-parallel")
    for page in PAGES:
        flow.task.add(step=fetch, initial_context=page, key=f"page-{page}")
    # keep_going: a failed page does not stop the others from starting.
    await flow.start(mode="parallel", resume=True, max_concurrency=2, keep_going=True)
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
        print(f"  {task.key}: {outcome}")


if __name__ == "__main__":
    flow = anyio.run(main)
    report(flow)
    raise SystemExit(0 if flow.status == "completed" else 1)
