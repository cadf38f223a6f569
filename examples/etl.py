"""The seed's ETL flow, ported from Dotflow: crash it, then resume it.

    python examples/etl.py --fresh --fail-last   # new run: step_three fails, one and two are saved
    python examples/etl.py                       # resume: one and two are skipped, three runs

Checkpoints go to ./.asyncflow (StorageFile's default).
"""

from __future__ import annotations

import argparse
import sys

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import StorageFile

FAIL_LAST = False
FRESH = False


@action
async def step_one() -> dict[str, bool]:
    return {"extracted": True}


@action(retry=3, retry_delay=0.1, backoff=True, timeout=10)
async def step_two(previous_context: Context) -> dict[str, object]:
    return {"transformed": previous_context.storage}


@action
def step_three(previous_context: Context) -> dict[str, object]:
    if FAIL_LAST:
        raise RuntimeError("the warehouse is down (simulated)")
    return {"loaded": previous_context.storage}


def build() -> AsyncFlow:
    """The flow, not started: ``asyncflow run examples/etl.py:build --resume`` runs it."""
    flow = AsyncFlow(config=Config(storage=StorageFile()), workflow_id="my-etl-pipeline")
    flow.task.add(step=step_one)
    flow.task.add(step=step_two)
    flow.task.add(step=step_three)
    return flow


async def main() -> AsyncFlow:
    flow = build()
    await flow.start(mode="sequential", resume=not FRESH)
    return flow


def report(flow: AsyncFlow) -> None:
    for task in flow.result_task():
        if task.restored:
            outcome = "skipped (restored from checkpoint)"
        elif task.error is not None:
            outcome = f"{task.status.value.lower()}: {task.error!r}"
        else:
            outcome = f"{task.status.value.lower()} -> {task.current_context.storage}"
        print(f"  {task.name:<11} {outcome}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fail-last", action="store_true", help="make step_three fail")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    args = parser.parse_args()
    FAIL_LAST, FRESH = args.fail_last, args.fresh
    flow = anyio.run(main)
    print(f"workflow {flow.workflow_id}: {flow.status}")
    report(flow)
    sys.exit(0 if flow.status == "completed" else 1)
