"""Workflows the viewer's tests (and screenshots) look at, made by running real flows.

``python -m tests.ui.demo URL`` fills a storage; ``python -m tests.ui.demo URL live``
runs a slow flow (one step every ``STEP_SECONDS``) for the live-update test;
``python -m tests.ui.demo URL approval`` resumes the parked approval flow.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio

from asyncflow import AsyncFlow, Config, Context, action, wait
from asyncflow.providers import Storage, storage_from_url

STEP_SECONDS = 0.6


@action
async def extract() -> dict[str, Any]:
    return {"rows": [{"id": i, "name": f"row <{i}>"} for i in range(3)]}


@action
async def transform(previous_context: Context) -> dict[str, Any]:
    return {"clean": len(previous_context.storage["rows"])}


@action(retry=2)
async def load(previous_context: Context) -> None:
    raise ConnectionError("warehouse refused the connection <script>alert(1)</script>")


@action
async def report(previous_context: Context) -> str:
    return "done"


def numbered(i: int) -> Any:
    async def step(initial_context: Context) -> int:
        return int(initial_context.storage) * 2

    step.__qualname__ = f"part_{i}"
    return action(step)


async def fill(storage: Storage, *, big: int = 40) -> None:
    """A completed, a failed, a parallel and a big workflow."""
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="daily-etl")
    for step in (extract, transform, report):
        flow.task.add(step=step)
    await flow.start(resume=True)

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="orders-sync")
    for step in (extract, transform, load, report):
        flow.task.add(step=step)
    await flow.start(resume=True)

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="thumbnails")
    for i in range(8):
        flow.task.add(step=numbered(i), initial_context=i)
    await flow.start(mode="parallel", resume=True)

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="big-batch")
    for i in range(big):
        flow.task.add(step=numbered(i), initial_context=i)
    await flow.start(mode="parallel", resume=True)

    await approval(storage)


async def approval(storage: Storage) -> AsyncFlow:
    """A run parked on the signal ``approve``; run again once approved, it completes."""
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="refund-approval")
    flow.task.add(step=extract)
    flow.task.add(step=wait.signal("approve"))
    flow.task.add(step=report)
    await flow.start(resume=True, on_wait="park")
    return flow


@action
async def pages() -> list[int]:
    return list(range(15))


@action
async def fetch(initial_context: Context) -> int:
    if initial_context.storage == 3:
        raise ValueError("page 3 is gone")
    return int(initial_context.storage) * 10


@action
async def join(previous_context: Context) -> str:
    return "joined"


async def graph(storage: Storage) -> AsyncFlow:
    """Fan-out over a map of 15 pages (one fails), a child flow, a fan-in."""
    audit = AsyncFlow(config=Config(storage=storage), workflow_id="audit")
    audit.task.add(step=extract)
    audit.task.add(step=report)
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="catalog-graph")
    flow.task.add(step=extract)
    flow.task.add(step=pages, depends_on="extract")
    flow.task.map(fetch, over="pages", key="fetch")
    flow.task.add(step=audit, key="audit", depends_on="extract")
    flow.task.add(step=join, depends_on=["fetch", "audit"])
    await flow.start(mode="graph", keep_going=True)
    return flow


def slow(i: int) -> Any:
    async def step(initial_context: Context) -> int:
        await anyio.sleep(STEP_SECONDS)
        return int(initial_context.storage)

    step.__qualname__ = f"slow_{i}"
    return action(step)


async def live(storage: Storage, steps: int) -> None:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="live-run")
    for i in range(steps):
        flow.task.add(step=slow(i), initial_context=i)
    await flow.start(resume=True)


async def main(url: str, what: str) -> None:
    async with storage_from_url(url) as storage:  # type: ignore[attr-defined]
        if what == "live":
            await live(storage, 6)
        elif what == "graph":
            await graph(storage)
        elif what == "approval":
            await approval(storage)
        else:
            await fill(storage)


if __name__ == "__main__":
    started = time.monotonic()
    anyio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "fill")
