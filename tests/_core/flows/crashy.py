"""A flow run in a child interpreter by the cross-process tests.

argv: STORAGE_URL LOG_FILE MODE [FAIL_KEY | hang:KEY]
Each real execution of a step appends "ran <key>" to LOG_FILE. FAIL_KEY makes
that step raise; hang:KEY makes it print "hanging" and wait to be killed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import storage_from_url

url, log_file, mode = sys.argv[1:4]
trouble = sys.argv[4] if len(sys.argv) > 4 else ""


def make(key: str) -> Any:
    async def step(initial_context: Context, previous_context: Context) -> Any:
        with open(log_file, "a") as log:
            log.write(f"ran {key}\n")
        if trouble == key:
            raise RuntimeError(f"step {key} fails this time")
        if trouble == f"hang:{key}":
            print("hanging", flush=True)
            time.sleep(60)
        return {
            "key": key,
            "initial": initial_context.storage,
            "previous": previous_context.storage,
        }

    step.__qualname__ = str(key)  # the default key derives from it: "0", "1", ...
    return action(step)


async def main() -> None:
    async with storage_from_url(url) as storage:
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="crashy")
        for i, group in enumerate(["g1", "g2", "g1", "g2"]):
            flow.task.add(step=make(str(i)), initial_context=i, group_name=group)
        await flow.start(mode=mode, resume=True)  # type: ignore[arg-type]
        await flow.wait()
        statuses = ",".join(t.status.value for t in flow.result_task())
        print(f"statuses {statuses}")
        print(f"outputs {flow.result_storage()!r}")


anyio.run(main)
