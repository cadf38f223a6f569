"""A long chain with sizeable outputs, killed at random moments by test_crash_torture.

argv: STORAGE_URL LOG_FILE MODE STEPS ATTEMPT
Each real execution appends "ATTEMPT KEY" to LOG_FILE before the step returns.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import storage_from_url

url, log_file, mode, steps, attempt = sys.argv[1:6]
PAD = 64 * 1024


def make(key: int) -> Any:
    async def step(previous_context: Context, initial_context: Context) -> dict[str, Any]:
        with open(log_file, "a") as log:
            log.write(f"{attempt} {key}\n")
        await anyio.sleep(0.02)
        previous = previous_context.storage or {"sum": 0}
        base = previous["sum"] if mode == "sequential" else 0
        return {"key": key, "sum": base + initial_context.storage, "pad": "x" * PAD}

    step.__qualname__ = str(key)  # the default key derives from it: "0", "1", ...
    return action(step)


async def main() -> None:
    async with storage_from_url(url) as storage:
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="torture")
        for i in range(int(steps)):
            flow.task.add(step=make(i), initial_context=i)
        await flow.start(mode=mode, resume=True, max_concurrency=2)  # type: ignore[arg-type]
        last = flow.result_storage()[-1]
        total = sum(s["sum"] for s in flow.result_storage())
        print(f"status {flow.status} last_sum {last['sum']} total {total}", flush=True)


anyio.run(main)
