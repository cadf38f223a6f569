"""What one ``Worker`` scan costs for N parked workflows on file storage.

Lays out N parked workflows (half wait for a sleep, half for a signal; each
with ``--records`` task records that a scan must never touch), then times,
in one process and on the same files:

* ``floor``: ``os.scandir`` of the root plus reading every ``run.json`` in
  one plain loop: the physical floor of "one listing + one read each";
* ``scan``: ``Worker.scan()``: the listing through ``list_children`` and every
  ``run.json`` read and decoded;
* ``due``: ``Worker.due()``: a scan plus one ``signals/`` listing per run
  that waits for a signal (none is due here, so nothing is resumed);
* ``full list``: ``storage.list("")``, what a scan that listed every key
  would pay: it grows with the task records, the scan does not.

Run from the repository root (the layout is built once per size, in a
temporary directory)::

    python benchmarks/worker_scan.py --workflows 10000 --records 10
    python benchmarks/worker_scan.py --workflows 10000 --records 0

The figures go in docs/waits.md with the machine they ran on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncflow import AsyncFlow, Worker, wait
from asyncflow._core.waits import WaitSpec
from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import StorageFile

FAR = 4_000_000_000.0  # 2096: nothing is due


def lay_out(root: Path, workflows: int, records: int) -> None:
    for n in range(workflows):
        wid = f"wf-{n:06d}"
        if n % 2:
            spec = WaitSpec("sleep", 0.0, wake_at=FAR)
        else:
            spec = WaitSpec("signal", 0.0, signal="approval")
        manifest = Manifest(
            workflow_id=wid,
            status="waiting",
            fingerprint=None,
            mode="sequential",
            tasks=("wait",),
            steps=("wait.sleep",),
            created_at=0.0,
            updated_at=0.0,
            waiting={"wait": spec.to_json()},
            due_at=spec.due_at,
        )
        tasks = root / wid / "tasks"
        tasks.mkdir(parents=True)
        (root / wid / "run.json").write_bytes(manifest.encode())
        for k in range(records):
            (tasks / f"k{k}.json").write_bytes(b'{"asyncflow":1}')


def floor(root: Path) -> int:
    count = 0
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                with open(os.path.join(entry.path, "run.json"), "rb") as handle:
                    handle.read()
                count += 1
    return count


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


async def main(workflows: int, records: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="asyncflow-scan-") as tmp:
        root = Path(tmp) / "store"
        root.mkdir()
        started = time.perf_counter()
        lay_out(root, workflows, records)
        print(f"laid out {workflows} parked workflows x {records} records in"
              f" {time.perf_counter() - started:.1f}s")  # fmt: skip
        storage = StorageFile(root)
        template = AsyncFlow(workflow_id="template")
        template.task.add(step=wait.sleep(1), key="wait")
        worker = Worker(template, storage=storage)

        async def floor_call() -> int:
            return await anyio.to_thread.run_sync(floor, root)

        async def full_list() -> int:
            return len([key async for key in storage.list("")])

        base, counted = await timed(floor_call, repeat)
        scan, parked = await timed(worker.scan, repeat)
        due, found = await timed(worker.due, repeat)
        listing, keys = await timed(full_list, repeat)
        assert counted == len(parked) == workflows
        assert found == []
        print(f"{'what':<10} {'median':>9} {'per wf':>9} {'x floor':>8}")
        for name, value in (("floor", base), ("scan", scan), ("due", due), ("full list", listing)):
            print(f"{name:<10} {value * 1000:8.1f}ms {value / workflows * 1e6:7.1f}us"
                  f" {value / base:7.1f}x")  # fmt: skip
        print(f"(full list saw {keys} keys)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.workflows, args.records, args.repeat)
