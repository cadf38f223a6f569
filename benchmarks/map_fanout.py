"""task.map over N items vs parallel mode over N tasks, in memory and on files.

    python benchmarks/map_fanout.py                 # N = 10 000, 3 repetitions
    python benchmarks/map_fanout.py --n 1000 --reps 1

Each configuration runs in its own process (so that peak RSS readings do not
mix): a flow ``items -> task.map(child)`` whose ``items`` returns
``list(range(N))``, and as the baseline of the same row group the same N
trivial steps added as N tasks of a ``parallel`` run. Reported: µs per child
(wall time of ``start()`` / N), the ratio to the baseline, and the peak RSS of
the run per child (``VmHWM`` after the run minus RSS before it, / N) plus what
building the flow cost. Files use ``StorageFile`` with the default durability
(``sync``: each child's record durable before it is reported done) and
``max_concurrency=64``; memory runs are unbounded.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from asyncflow import AsyncFlow, Config, Context, action  # noqa: E402
from asyncflow.providers import StorageDefault, StorageFile  # noqa: E402


def _rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _peak_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


@action
async def items(initial_context: Context) -> list[int]:
    return list(range(initial_context.storage))


@action
async def child(initial_context: Context) -> int:
    return 1


async def measure(spec: dict[str, Any]) -> dict[str, Any]:
    n, kind, op = spec["n"], spec["storage"], spec["op"]
    storage = StorageFile(spec["root"]) if kind == "file" else StorageDefault()
    limit = 64 if kind == "file" else None
    gc.collect()
    imported = _rss_kib()
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=f"bench-{op}")
    if op == "map":
        flow.task.add(step=items, initial_context=n)
        flow.task.map(child, over="items", key="child")
        mode = "graph"
    else:
        for _ in range(n):
            flow.task.add(step=child, initial_context=1)
        mode = "parallel"
    gc.collect()
    built = _rss_kib()
    clock = time.perf_counter()
    await flow.start(mode=mode, max_concurrency=limit)  # type: ignore[arg-type]
    wall = time.perf_counter() - clock
    peak = _peak_kib()
    assert flow.status == "completed", flow.status
    if op == "map":
        assert len(flow.result_storage()[1]) == n
    return {
        "wall": wall,
        "run_bytes": max(0, peak - built) * 1024 / n,
        "build_bytes": (built - imported) * 1024 / n,
    }


def in_child(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(anyio.run(measure, json.loads(args.child))))
        return
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"command: python benchmarks/map_fanout.py --n {args.n} --reps {args.reps}")
    print()
    print("| storage | N | implementation | µs/child | ratio | peak RSS of the run | to build |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for kind in ("memory", "file"):
        results: dict[str, list[dict[str, Any]]] = {"parallel": [], "map": []}
        for _ in range(args.reps):
            for op in ("parallel", "map"):  # interleaved: a noisy neighbour hurts both
                with tempfile.TemporaryDirectory(prefix="asyncflow-map-", dir=".") as root:
                    spec = {"n": args.n, "storage": kind, "op": op, "root": root}
                    results[op].append(in_child(spec))
        base = statistics.median(r["wall"] for r in results["parallel"])
        for op, label in (("parallel", "parallel mode, N tasks (baseline)"), ("map", "task.map")):
            wall = statistics.median(r["wall"] for r in results[op])
            run_b = statistics.median(r["run_bytes"] for r in results[op])
            build_b = statistics.median(r["build_bytes"] for r in results[op])
            print(
                f"| {kind} | {args.n} | {label} | {wall / args.n * 1e6:.1f} | {wall / base:.2f}x"
                f" | {run_b:.0f} B/child | {build_b:.0f} B/child |"
            )


if __name__ == "__main__":
    main()
