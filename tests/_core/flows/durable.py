"""A long flow run in a child interpreter by ``test_durability``'s crash tests.

argv: STORE_DIR LOG_FILE MODE DURABILITY N
Each real execution of a step appends "ran <key>" to LOG_FILE (flushed, so the
parent sees progress) and sleeps a little, so that a SIGKILL lands mid-run
with checkpoint writes in flight.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import anyio

from asyncflow import AsyncFlow, Config, action
from asyncflow.providers import StorageFile

store, log_file, mode, durability, count = sys.argv[1:6]


def make(key: str) -> Any:
    async def step(previous_context: Any) -> Any:
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"ran {key}\n".encode())
        finally:
            os.close(fd)
        time.sleep(0.0005)
        await anyio.sleep(0)
        return {"key": key, "blob": "x" * 2000}

    step.__qualname__ = f"step_{key}"
    return action(step)


async def main() -> None:
    config = Config(storage=StorageFile(store), durability=durability)
    flow = AsyncFlow(config=config, workflow_id="durable")
    for i in range(int(count)):
        flow.task.add(step=make(f"k{i:04d}"), key=f"k{i:04d}")
    await flow.start(mode=mode, resume=True, max_concurrency=16)  # type: ignore[arg-type]
    print("statuses", ",".join(sorted({t.status.value for t in flow.result_task()})))


anyio.run(main)
