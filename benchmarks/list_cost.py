"""What ``asyncflow list`` costs for many workflows, on file storage and SeaweedFS (S3).

Writes ``--workflows`` workflows as runs leave them (``run.json``, one run
summary, ``--tasks`` task records each), then measures, in one process:

* ``ids``: the delimiter listing of the root (``list_children("")``), which
  is how ``asyncflow list`` finds workflow ids;
* ``list``: ``list_workflows`` as ``asyncflow list`` runs it: that listing
  plus one ``run.json`` read per workflow, 32 in flight;
* ``full listing``: ``storage.list("")``, every key of every workflow:
  what finding the ids would cost without ``list_children`` (the fallback
  for a backend that lacks it), as a baseline for the ratio.

Run from the repository root (SeaweedFS is started on 127.0.0.1 as in the tests)::

    python benchmarks/list_cost.py                         # 10 000 workflows, both
    python benchmarks/list_cost.py --only file --workflows 1000

Figures depend on the machine; docs/benchmarks.md records one run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import Storage, StorageFile, list_children
from asyncflow.reading import list_workflows
from tests.servers import start_seaweedfs

RECORD = b'{"asyncflow":1,"output":{"rows":1234},"meta":"' + b"x" * 200 + b'"}'
SUMMARY = b'{"asyncflow":1,"kind":"run","meta":"' + b"x" * 600 + b'"}'


async def _bounded(concurrency: int, calls: list[Callable[[], Awaitable[Any]]]) -> None:
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with limiter:
            await call()

    async with anyio.create_task_group() as group:
        for call in calls:
            group.start_soon(one, call)


def _manifest(workflow_id: str, tasks: int) -> bytes:
    keys = tuple(f"t{i}" for i in range(tasks))
    now = time.time()
    return Manifest(
        workflow_id=workflow_id,
        status="completed",
        fingerprint=None,
        mode="sequential",
        tasks=keys,
        created_at=now,
        updated_at=now,
        steps=keys,
        outcomes=dict.fromkeys(keys, "completed"),
        run_id="20261130T000000.000000Z-000000",
    ).encode()


async def populate(storage: Storage, workflows: int, tasks: int) -> int:
    writes: list[Callable[[], Awaitable[Any]]] = []
    for n in range(workflows):
        wid = f"wf-{n:05d}"
        writes.append(lambda w=wid: storage.write(f"{w}/run.json", _manifest(w, tasks)))
        writes.append(
            lambda w=wid: storage.write(f"{w}/runs/20261130T000000.000000Z-000000.json", SUMMARY)
        )
        for t in range(tasks):
            writes.append(lambda w=wid, t=t: storage.write(f"{w}/tasks/t{t}.json", RECORD))
    await _bounded(64, writes)
    return len(writes)


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await call()
        best = min(best, time.perf_counter() - start)
    return best, result


@contextlib.asynccontextmanager
async def backend(kind: str, root: Path) -> AsyncIterator[Storage]:
    if kind == "file":
        async with StorageFile(root / "file") as storage:
            yield storage
        return
    from asyncflow.providers.s3 import StorageS3

    with start_seaweedfs(root / "seaweedfs") as server:
        async with StorageS3(server.bucket, "bench", **server.client_kwargs()) as storage:
            yield storage


async def measure(kind: str, workflows: int, tasks: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with backend(kind, Path(tmp)) as storage:
            start = time.perf_counter()
            objects = await populate(storage, workflows, tasks)
            wrote = time.perf_counter() - start

            async def ids() -> list[str]:
                return [s async for s in list_children(storage, "")]

            async def full() -> list[str]:
                return [k async for k in storage.list("")]

            ids_s, found = await timed(ids, repeat)
            list_s, infos = await timed(lambda: list_workflows(storage), repeat)
            full_s, keys = await timed(full, repeat)
            assert len(found) == workflows, len(found)
            assert len(infos) == workflows, len(infos)
            assert len(keys) == objects, len(keys)
            print(
                f"{kind:<14} {workflows} workflows ({objects} objects, written in {wrote:.1f}s):"
                f" ids {ids_s:.3f}s | list {list_s:.3f}s"
                f" ({list_s / workflows * 1e6:.0f} us/workflow)"
                f" | full listing {full_s:.3f}s ({full_s / ids_s:.1f}x the ids listing)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=3, help="task records per workflow")
    parser.add_argument("--repeat", type=int, default=3, help="best of N")
    parser.add_argument("--only", choices=["file", "s3-seaweedfs"])
    args = parser.parse_args()
    for kind in ["file", "s3-seaweedfs"]:
        if args.only in (None, kind):
            anyio.run(measure, kind, args.workflows, args.tasks, args.repeat)


if __name__ == "__main__":
    main()
