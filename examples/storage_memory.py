"""``StorageDefault``: checkpoints in this process's memory.

    python examples/storage_memory.py

Good for tests and for flows that only need "skip what is done" within one
process: a second ``start(resume=True)`` on the same storage skips the
completed steps. A new process starts from scratch (use ``StorageFile`` or an
object store to resume after a crash).
"""

from __future__ import annotations

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import StorageDefault

runs: list[str] = []
warehouse_up = False


@action
async def extract() -> list[int]:
    runs.append("extract")
    return [1, 2, 3]


@action
async def load(previous_context: Context) -> int:
    runs.append("load")
    if not warehouse_up:
        raise RuntimeError("the warehouse is down")
    return sum(previous_context.storage)


def build(storage: StorageDefault) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="storage-memory")
    flow.task.add(step=extract)
    flow.task.add(step=load)
    return flow


async def main() -> None:
    global warehouse_up
    storage = StorageDefault()  # one storage object shared by both runs
    first = await build(storage).start(resume=True)
    print(f"first run: {first.status}, ran {runs}")

    warehouse_up = True
    runs.clear()
    second = await build(storage).start(resume=True)
    print(f"second run: {second.status}, ran {runs}, result {second.result_storage()[-1]}")
    assert [task.restored for task in second.result_task()] == [True, False]


if __name__ == "__main__":
    anyio.run(main)
