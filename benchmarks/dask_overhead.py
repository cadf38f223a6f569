"""What a step costs on a Dask cluster compared to in-process (docs/scale-out.md).

    python benchmarks/dask_overhead.py [STEPS]

Starts LocalCluster(n_workers=2, processes=True) on 127.0.0.1 and times a
sequential flow of STEPS trivial steps (async and sync), StorageDefault,
in-process and with DaskExecutor, plus a bare ``await client.submit(...)``.
The difference per step is the remote cost: serialization of the function
and the contexts, scheduler round trip, result transfer.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import anyio
from distributed import Client, LocalCluster

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.executors import DaskExecutor


@action
async def async_step(previous_context: Context) -> int:
    return (previous_context.storage or 0) + 1


@action
def sync_step(previous_context: Context) -> int:
    return (previous_context.storage or 0) + 1


def _inc(x: int) -> int:
    return x + 1


async def per_step(config: Config, step: Any, steps: int) -> float:
    flow = AsyncFlow(config=config)
    for _ in range(steps):
        flow.task.add(step=step)
    clock = time.perf_counter()
    await flow.start()
    elapsed = time.perf_counter() - clock
    assert flow.result_task()[-1].current_context.storage == steps
    return elapsed / steps


async def main(address: str, steps: int) -> None:
    async with DaskExecutor(address) as executor:
        client: Client = await executor.client()
        await client.wait_for_workers(2)
        for _ in range(20):  # warm up connections and the function caches
            await client.submit(_inc, 1, pure=False)
        bare = []
        for i in range(steps):
            clock = time.perf_counter()
            await client.submit(_inc, i, pure=False)
            bare.append(time.perf_counter() - clock)
        print(f"bare client.submit round trip: median {statistics.median(bare) * 1e3:.2f} ms")
        for label, step in (("async", async_step), ("sync", sync_step)):
            local = await per_step(Config(), step, steps)
            remote = await per_step(Config(executor=executor), step, steps)
            print(
                f"{label} step: in-process {local * 1e3:.3f} ms, on Dask {remote * 1e3:.2f} ms,"
                f" remote cost {(remote - local) * 1e3:.2f} ms per step"
            )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with LocalCluster(
        n_workers=2,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # not port 8787
    ) as cluster:
        anyio.run(main, cluster.scheduler_address, n)
