"""A chain run in a child interpreter by the cross-process pack tests.

argv: STORAGE_URL LOG_FILE N VALUE [RERUN_FROM|-] [CRASH_AT|-]
Step ``s0`` returns VALUE, each next step the previous output plus VALUE; each
real execution appends "ran <key>" to LOG_FILE. CRASH_AT kills this process
(SIGKILL) when that step starts. At the end it prints the last output and
how many records were read from their own keys and how often the pack was.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import storage_from_url

url, log_file, n, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rerun_from = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
crash_at = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] != "-" else None


def make(key: str) -> Any:
    async def step(previous_context: Context) -> Any:
        if key == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        with open(log_file, "a") as log:
            log.write(f"ran {key}\n")
        before = previous_context.storage
        return value if before is None else before + value

    step.__qualname__ = key
    return action(step)


async def main() -> None:
    storage = storage_from_url(url)
    reads: list[str] = []
    read = storage.read

    async def counted(key: str) -> Any:
        reads.append(key)
        return await read(key)

    storage.read = counted  # type: ignore[method-assign]
    storage.read_many = None  # type: ignore[attr-defined]  # every record read is one read()
    flow = AsyncFlow(config=Config(storage=storage, pack_min_records=8), workflow_id="packed")
    for i in range(n):
        flow.task.add(step=make(f"s{i}"))
    try:
        await flow.start(resume=True, rerun_from=rerun_from)
    finally:
        await storage.aclose()
    records = sum(1 for key in reads if "/tasks/" in key)
    packs = sum(1 for key in reads if key.endswith("/pack/tasks.pack"))
    print(f"last {flow.task.queue[-1].current_context.storage} records {records} packs {packs}")


anyio.run(main)
