"""How long the run viewer takes to serve its pages, per storage backend.

For each backend it stores a run of ``--tasks`` tasks (a real flow, one task
failing) and ``--workflows`` other workflows (their ``run.json`` written
directly), then times, through the viewer's ASGI app in this process:

* ``run page, 1,000 tasks``: ``/workflows/big`` on a new app: ``run.json``,
  the lease, one listing and every task record's metadata, the graph, the
  timeline and the task table;
* ``run page again (a live poll)``: the same page again: the records read
  during this run are cached, so only ``run.json``, the lease and a listing;
* ``running run page, 1,000 tasks``: ``/workflows/live`` on a new app, while
  a flow of ``--tasks`` tasks runs in this process with all but its last task
  done (the last waits until the measurement ends);
* ``running run page again (a poll)``: the same page on the same app;
* ``task page``: one task with its output preview (``run.json``, the lease
  and that task's record);
* ``workflows, first load``: ``/`` on a new app: one listing of the whole
  storage and every ``run.json``;
* ``workflows, page at startup``: ``/`` asked for as the app starts (its
  lifespan starts building the index): the rows read within 0.15 s, and how
  many are left; ``index complete after``: when that background build ends;
* ``workflows (index cached)``: ``/`` once the index exists (a stale index is
  served as is and refreshed after the response);
* ``workflows, filtered``: ``/?status=failed&q=7`` on the cached index;
* ``index refresh (background)``: what that refresh costs: one listing, and
  ``run.json`` only of workflows that changed;

Baselines in the same process: ``raw run reads`` (one listing plus every task
record read with 32 in flight: the I/O the run page cannot avoid) and ``raw
listing`` (one listing of the whole storage). Each figure is the median of
``--reps`` repetitions (``first load``: of ``--cold-reps``, each on a fresh app).

Run from the repository root::

    python benchmarks/ui_pages.py                       # file storage
    python benchmarks/ui_pages.py --backend s3 --backend gcs --workflows 2000

S3 is SeaweedFS and GCS fake-gcs-server, started on 127.0.0.1 as the tests
do (``tests/servers.py``). Figures go in ``docs/ui.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx

sys.path.insert(0, str(Path(__file__).parent.parent))

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.layout import manifest_key, task_prefix
from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import Storage, StorageFile
from asyncflow.ui import create_app


def part(i: int) -> Any:
    async def step(initial_context: Context) -> dict[str, Any]:
        if initial_context.storage == 7:
            raise ValueError("item 7 is malformed")
        return {"item": initial_context.storage, "payload": "x" * 64}

    step.__qualname__ = f"part_{i}"
    return action(step)


async def fill(storage: Storage, tasks: int, workflows: int) -> None:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="big")
    for i in range(tasks):
        flow.task.add(step=part(i), initial_context=i)
    await flow.start(mode="parallel", max_concurrency=32, keep_going=True)
    statuses = ("completed", "failed", "cancelled")
    pending = iter(range(workflows))

    async def worker() -> None:
        for i in pending:
            manifest = Manifest(
                f"wf-{i:05d}", statuses[i % 3], None, "sequential", ("0", "1"), i, 1e9 + i
            )
            await storage.write(manifest_key(manifest.workflow_id), manifest.encode())

    await run_all([worker] * 32)


async def timed(job: Callable[[], Awaitable[Any]], reps: int) -> float:
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        await job()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


async def start_live(
    storage: Storage, tasks: int, group: anyio.abc.TaskGroup, gate: anyio.Event
) -> None:
    """A run of ``tasks`` tasks left running: every task done but the last, which waits."""

    @action
    async def last() -> int:
        await gate.wait()
        return 1

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="live")
    for i in range(tasks - 1):
        flow.task.add(step=part(i), initial_context=i)
    flow.task.add(step=last)
    group.start_soon(lambda: flow.start(mode="parallel", max_concurrency=32, keep_going=True))
    prefix = task_prefix("live")
    while len([n async for n in storage.list(prefix)]) < tasks - 2:
        await anyio.sleep(0.2)
    await anyio.sleep(2.5)  # the live run.json writer has had its turn


def get(http: httpx.AsyncClient, path: str) -> Callable[[], Awaitable[Any]]:
    async def fetch() -> None:
        response = await http.get(path)
        if response.status_code != 200:
            raise AssertionError(f"{path}: {response.status_code} {response.text[:300]}")

    return fetch


async def measure(
    storage: Storage, tasks: int, reps: int, cold_reps: int
) -> list[tuple[str, float]]:
    async def raw_run() -> None:
        names = [n async for n in storage.list(task_prefix("big"))]
        pending = iter(names)

        async def worker() -> None:
            for name in pending:
                await storage.read(name)

        await run_all([worker] * 32)

    async def raw_listing() -> None:
        async for _ in storage.list(""):
            pass

    rows = [
        ("raw run reads (baseline)", await timed(raw_run, reps)),
        ("raw listing (baseline)", await timed(raw_listing, reps)),
    ]
    async with _client(create_app(storage)) as http:  # templates compile once per process
        await get(http, "/workflows/big/tasks/part_1")()
        await get(http, "/workflows/big")()
    cold = []
    for _ in range(cold_reps):
        async with _client(create_app(storage)) as http:
            cold.append(await timed(get(http, "/"), 1))
    rows.append(("workflows, first load", statistics.median(cold)))
    if hasattr(create_app(storage).state.catalog, "attach"):  # the index built at startup
        at_start, built = [], []
        for _ in range(cold_reps):
            app = create_app(storage)
            async with app.router.lifespan_context(app), _client(app) as http:
                started = time.perf_counter()
                await get(http, "/")()
                at_start.append((time.perf_counter() - started) * 1000)
                while not app.state.catalog.built:
                    await anyio.sleep(0.005)
                built.append((time.perf_counter() - started) * 1000)
        rows.append(("workflows, page at startup", statistics.median(at_start)))
        rows.append(("  index complete after", statistics.median(built)))
    first = []
    for _ in range(reps):
        async with _client(create_app(storage)) as http:
            first.append(await timed(get(http, "/workflows/big"), 1))
    rows.append(("run page, 1,000 tasks", statistics.median(first)))
    app = create_app(storage)
    catalog = app.state.catalog
    async with _client(app) as http:
        await get(http, "/")()
        catalog.ttl = 3600.0
        rows.append(("workflows (index cached)", await timed(get(http, "/"), reps)))
        filtered = get(http, "/?status=failed&q=7")
        rows.append(("workflows, filtered", await timed(filtered, reps)))
        catalog.ttl = 0.0

        async def refresh() -> None:
            await catalog.refresh()

        rows.append(("index refresh (background)", await timed(refresh, reps)))
        rows.append(
            ("run page again (a live poll)", await timed(get(http, "/workflows/big"), reps))
        )
        task = get(http, f"/workflows/big/tasks/part_{tasks // 2}")
        rows.append(("task page", await timed(task, reps)))
    gate = anyio.Event()
    async with anyio.create_task_group() as group:
        await start_live(storage, tasks, group, gate)
        live = []
        for _ in range(reps):
            async with _client(create_app(storage)) as http:
                live.append(await timed(get(http, "/workflows/live"), 1))
        rows.append(("running run page, 1,000 tasks", statistics.median(live)))
        async with _client(create_app(storage)) as http:
            await get(http, "/workflows/live")()
            again = await timed(get(http, "/workflows/live"), reps)
            rows.append(("running run page again (a poll)", again))
            task = await timed(get(http, f"/workflows/live/tasks/part_{tasks // 2}"), reps)
            rows.append(("running run, task page", task))
        gate.set()
    return rows


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


@contextlib.asynccontextmanager
async def backend(kind: str, root: Path, stack: contextlib.ExitStack) -> AsyncIterator[Storage]:
    if kind == "file":
        async with StorageFile(root / "store") as storage:
            yield storage
        return
    from tests.servers import start_fake_gcs, start_seaweedfs

    if kind == "s3":
        from asyncflow.providers import StorageS3

        s3 = stack.enter_context(start_seaweedfs(root / "seaweedfs"))
        async with StorageS3(s3.bucket, "ui-bench", **s3.client_kwargs()) as storage:
            yield storage
        return
    from asyncflow.providers import StorageGCS

    gcs = stack.enter_context(start_fake_gcs(root / "fake-gcs"))
    async with StorageGCS(gcs.bucket, "ui-bench", api_root=gcs.url) as storage:
        yield storage


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError), open("/proc/loadavg") as handle:
        load = f", load average {handle.read().split()[0]}"
    return f"{os.cpu_count()} CPUs, {cpu}, Python {sys.version.split()[0]}{load}"


async def main(args: argparse.Namespace) -> None:
    print(f"run of {args.tasks} tasks, {args.workflows} other workflows, median of {args.reps}")
    print(machine())
    for kind in args.backend or ["file"]:
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            async with backend(kind, Path(tmp), stack) as storage:
                started = time.perf_counter()
                await fill(storage, args.tasks, args.workflows)
                print(f"\n{kind}: filled in {time.perf_counter() - started:.1f} s")
                for name, ms in await measure(storage, args.tasks, args.reps, args.cold_reps):
                    print(f"  {name:<28} {ms:9.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=["file", "s3", "gcs"])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cold-reps", type=int, default=3, help="first loads (each reads all)")
    anyio.run(main, parser.parse_args())
