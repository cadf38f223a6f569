"""Many workflows at once: W workflows x S steps, concurrently, in one process.

    python benchmarks/many_workflows.py                      # 1,000 x 10 on file and SeaweedFS
    python benchmarks/many_workflows.py --backend s3 --reps 3
    python benchmarks/many_workflows.py --smoke              # CI: 20 x 3 on file, asserts no timing

Per backend and repetition, interleaved, three ways of doing the same W x S
steps:

* ``raw asyncio``: W tasks, each awaiting the same step coroutine S times
  (the floor of the engine, no storage);
* ``raw writes``: W tasks, each writing S records of the same bytes as
  asyncflow's, one after another, through the same storage object (the floor
  of any checkpointing runner on that storage);
* ``asyncflow``: W ``AsyncFlow`` objects of S steps, all started at once
  (``durability="sync"``), each holding its own lease.

Reported: workflows per second, the p50/p99 latency of a step (from the step
starting to its record being written; for raw writes, one write), and, from a
wrapper that counts every storage call, the calls per workflow besides the S
step records: what a workflow start and end cost in round trips, by kind.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from asyncflow import AsyncFlow, Config, action  # noqa: E402
from asyncflow.providers import StorageDefault, StorageFile  # noqa: E402

__all__ = ["Counting", "main"]


class Counting:
    """A storage that forwards every call and counts it, by kind of key.

    Optional methods (``read_many``, ``delete_many``, ``write_many``,
    ``list_children``) exist only when the wrapped storage has them, so the
    engine takes the same paths as without the wrapper.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.persistent = inner.persistent
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.written: dict[str, float] = {}
        for name in ("read_many", "delete_many", "write_many", "list_children"):
            if hasattr(inner, name):
                setattr(self, name, getattr(self, "_" + name))

    @staticmethod
    def kind(key: str) -> str:
        rest = key.partition("/")[2]
        if rest.startswith("tasks/"):
            return "task record"
        if rest.startswith("runs/"):
            return "run summary"
        if rest in ("run.json", "lease.json"):
            return rest
        return rest.partition("/")[0] + "/" if "/" in rest else rest or "(workflow root)"

    async def read(self, key: str) -> Any:
        self.calls["read", self.kind(key)] += 1
        return await self.inner.read(key)

    async def write(self, key: str, data: bytes, **conditions: Any) -> str:
        op = "write"
        if conditions.get("if_absent"):
            op = "create"
        elif conditions.get("if_version") is not None:
            op = "swap"
        self.calls[op, self.kind(key)] += 1
        version: str = await self.inner.write(key, data, **conditions)
        self.written[key] = time.perf_counter()
        return version

    async def delete(self, key: str) -> None:
        self.calls["delete", self.kind(key)] += 1
        await self.inner.delete(key)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        self.calls["list", self.kind(prefix)] += 1
        async for key in self.inner.list(prefix):
            yield key

    async def _list_children(self, prefix: str) -> AsyncIterator[str]:
        self.calls["list", self.kind(prefix)] += 1
        async for key in self.inner.list_children(prefix):
            yield key

    async def _read_many(self, keys: list[str]) -> Any:
        self.calls["read_many", "task record"] += 1
        return await self.inner.read_many(keys)

    async def _delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.calls["delete_many", "(any)"] += 1
        await self.inner.delete_many(keys)

    async def _write_many(self, items: list[tuple[str, bytes]]) -> Any:
        self.calls["write_many", "task record"] += 1
        return await self.inner.write_many(items)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- the steps -------------------------------------------------------------------


STARTED: dict[tuple[str, str], float] = {}


async def _step(previous_context: Any = None) -> int:
    return 1


@action
async def step(previous_context: Any) -> int:
    return await _step(previous_context)


def _timed_step(workflow_id: str, key: str) -> Any:
    @action
    async def timed(previous_context: Any) -> int:
        STARTED[workflow_id, key] = time.perf_counter()
        return await _step(previous_context)

    return timed


# -- the three ways ---------------------------------------------------------------


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


async def raw_asyncio(workflows: int, steps: int) -> dict[str, Any]:
    latencies: list[float] = []

    async def one() -> None:
        value: Any = None
        for _ in range(steps):
            clock = time.perf_counter()
            value = await _step(value)
            latencies.append(time.perf_counter() - clock)

    clock = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(workflows):
            group.start_soon(one)
    return {"wall": time.perf_counter() - clock, "latencies": latencies}


async def raw_writes(storage: Any, workflows: int, steps: int, record: bytes) -> dict[str, Any]:
    latencies: list[float] = []
    base = f"raw-{os.urandom(3).hex()}"

    async def one(w: int) -> None:
        for s in range(steps):
            clock = time.perf_counter()
            await storage.write(f"{base}-{w}/tasks/s{s}.json", record)
            latencies.append(time.perf_counter() - clock)

    clock = time.perf_counter()
    async with anyio.create_task_group() as group:
        for w in range(workflows):
            group.start_soon(one, w)
    return {"wall": time.perf_counter() - clock, "latencies": latencies}


async def with_asyncflow(
    storage: Any, workflows: int, steps: int, config: dict[str, Any]
) -> dict[str, Any]:
    counting = Counting(storage)
    tag = os.urandom(3).hex()
    flows = []
    for w in range(workflows):
        workflow_id = f"wf-{tag}-{w}"
        flow = AsyncFlow(config=Config(storage=counting, **config), workflow_id=workflow_id)
        for s in range(steps):
            flow.task.add(_timed_step(workflow_id, f"s{s}"), key=f"s{s}")
        flows.append(flow)
    STARTED.clear()
    errors: collections.Counter[str] = collections.Counter()

    async def run(flow: AsyncFlow) -> None:
        # A workflow that fails (a lost lease on an overloaded store) is
        # counted and reported, not allowed to cancel the other 999.
        try:
            await flow.start()
        except Exception as exc:
            errors[type(exc).__name__] += 1

    clock = time.perf_counter()
    async with anyio.create_task_group() as group:
        for flow in flows:
            group.start_soon(run, flow)
    wall = time.perf_counter() - clock
    latencies = [
        counting.written[where] - started
        for (workflow_id, key), started in STARTED.items()
        if (where := f"{workflow_id}/tasks/{key}.json") in counting.written
    ]
    if not errors:
        assert all(f.status == "completed" for f in flows)
        assert len(latencies) == workflows * steps, (len(latencies), workflows * steps)
    return {
        "wall": wall,
        "latencies": latencies,
        "calls": dict(counting.calls),
        "errors": dict(errors),
    }


async def a_record(steps: int) -> bytes:
    """The bytes asyncflow writes for one of these steps (for the raw-writes floor)."""
    storage = StorageDefault()
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="wf-sample-0")
    for s in range(steps):
        flow.task.add(step, key=f"s{s}")
    await flow.start()
    blob = await storage.read(f"wf-sample-0/tasks/s{min(1, steps - 1)}.json")
    assert blob is not None
    return blob.data


# -- backends ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def backend(kind: str, stack: contextlib.ExitStack, root: Path) -> AsyncIterator[Any]:
    if kind == "file":
        path = root / "file-store"
        yield StorageFile(path)
        shutil.rmtree(path, ignore_errors=True)
        return
    from asyncflow.providers.s3 import StorageS3
    from tests.servers import start_seaweedfs

    server = stack.enter_context(start_seaweedfs(root / "seaweedfs"))
    async with StorageS3(server.bucket, "many", **server.client_kwargs()) as storage:
        yield storage


NAMES = {"file": "file (StorageFile, sync)", "s3": "S3 (SeaweedFS)"}


async def measure(kind: str, args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    W, S = args.workflows, args.steps
    config: dict[str, Any] = {}
    label = "asyncflow"
    if args.lease_ttl is not None:
        config["lease_ttl"] = args.lease_ttl
        label = f"asyncflow, lease_ttl={args.lease_ttl:g}"
    record = await a_record(S)
    runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    with contextlib.ExitStack() as stack:
        async with backend(kind, stack, root) as storage:
            await raw_writes(storage, min(W, 8), 2, record)  # warm the client / directories
            for rep in range(args.reps):
                print(f"  {kind}: repetition {rep + 1}/{args.reps}", file=sys.stderr)
                runs["raw asyncio (floor)"].append(await raw_asyncio(W, S))
                runs["raw writes, same bytes (floor)"].append(
                    await raw_writes(storage, W, S, record)
                )
                runs[label].append(await with_asyncflow(storage, W, S, config))
    rows = []
    for impl, results in runs.items():
        wall = statistics.median(r["wall"] for r in results)
        best = min(results, key=lambda r: r["wall"])
        p50, p99 = _quantiles([x for r in results for x in r["latencies"]])
        row: dict[str, Any] = {
            "backend": NAMES[kind],
            "impl": impl,
            "workflows": W,
            "steps": S,
            "wall": wall,
            "workflows_per_s": W / wall,
            "steps_per_s": W * S / wall,
            "p50_ms": p50 * 1e3,
            "p99_ms": p99 * 1e3,
        }
        if "calls" in best:
            calls = collections.Counter[tuple[str, str]]()
            for r in results:
                calls.update(r["calls"])
            per_wf = {f"{op} {what}": n / (W * len(results)) for (op, what), n in calls.items()}
            row["calls_per_workflow"] = dict(sorted(per_wf.items()))
            row["overhead_calls"] = sum(
                n for name, n in per_wf.items() if not name.endswith("task record")
            )
            failed: collections.Counter[str] = collections.Counter()
            for r in results:
                failed.update(r["errors"])
            row["failed"] = dict(failed)
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | implementation | workflows x steps | wall s | workflows/s | steps/s"
        " | step p50 ms | step p99 ms | ratio (wall) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    bases: dict[str, float] = {}
    for row in rows:
        if row["impl"].startswith("raw writes"):
            bases[row["backend"]] = row["wall"]
    for row in rows:
        base = bases.get(row["backend"])
        floor = row["impl"].startswith("raw asyncio")
        ratio = f"{row['wall'] / base:.2f}x" if base and not floor else "—"
        lines.append(
            f"| {row['backend']} | {row['impl']} | {row['workflows']} x {row['steps']}"
            f" | {row['wall']:.2f} | {row['workflows_per_s']:.0f} | {row['steps_per_s']:.0f}"
            f" | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {ratio} |"
        )
    lines.append("")
    lines.append("Storage calls per workflow besides its step records (asyncflow rows):")
    lines.append("")
    for row in rows:
        if "calls_per_workflow" in row:
            parts = ", ".join(
                f"{name} {n:g}"
                for name, n in row["calls_per_workflow"].items()
                if not name.endswith("task record")
            )
            steps = sum(
                n for name, n in row["calls_per_workflow"].items() if name.endswith("task record")
            )
            failed = ", ".join(f"{n} {name}" for name, n in row["failed"].items())
            lines.append(
                f"* {row['backend']}, {row['impl']}: **{row['overhead_calls']:g}** ({parts});"
                f" step records {steps:g}"
                + (f"; **failed workflows** (all repetitions): {failed}" if failed else "")
            )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="asyncflow-many-", dir=".") as name:
        root = Path(name).resolve()
        for kind in args.backend:
            rows.extend(await measure(kind, args, root / kind))
    print(f"command: python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}".rstrip())
    with contextlib.suppress(OSError), open("/proc/loadavg") as handle:
        print(f"load average at the end: {handle.read().split()[:3]}")
    print()
    print(render(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median wall)")
    parser.add_argument(
        "--backend", action="append", choices=("file", "s3"), help="repeatable; default both"
    )
    parser.add_argument(
        "--lease-ttl", type=float, default=None, help="Config(lease_ttl=) of the workflows"
    )
    parser.add_argument("--smoke", action="store_true", help="20 x 3 on file, one repetition")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.workflows, args.steps, args.reps = 20, 3, 1
        args.backend = args.backend or ["file"]
    args.backend = args.backend or ["file", "s3"]
    return args


if __name__ == "__main__":
    anyio.run(main, parse())
