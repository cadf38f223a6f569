"""Flows run in a child interpreter by tests/_core/test_graph_cross_process.py.

argv: STORAGE_URL LOG_FILE SCENARIO VARIANT TROUBLE
Each real execution of a step appends "ran <name>" to LOG_FILE. TROUBLE is a
comma-separated list of names that raise this time, or ``hang:NAME`` to print
"hanging" and wait to be killed.

Scenarios:
  edit     a sequential flow of a function, a functools.partial and a
           callable object; VARIANT "v2" inserts two steps.
  diamond  graph mode: top -> left, right -> bottom.
  map      graph mode: pages -> fetch (task.map) -> total.
  child    sequential: prepare -> sub (a child flow c1 -> c2 -> c3) -> finish.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import storage_from_url

url, log_file, scenario, variant = sys.argv[1:5]
trouble = sys.argv[5] if len(sys.argv) > 5 else ""
failing = set(trouble.split(",")) if trouble and not trouble.startswith("hang:") else set()


def note(name: str) -> None:
    with open(log_file, "a") as log:
        log.write(f"ran {name}\n")
    if name in failing:
        raise RuntimeError(f"{name} fails this time")
    if trouble == f"hang:{name}":
        print("hanging", flush=True)
        time.sleep(60)


async def extract() -> list[int]:
    note("extract")
    return [1, 2, 3]


async def scale(previous_context: Context, factor: int) -> list[int]:
    note("scale")
    return [x * factor for x in previous_context.storage]


class Offset:
    """A callable object: its key and name come from the class."""

    def __init__(self, by: int) -> None:
        self.by = by

    async def __call__(self, previous_context: Context) -> list[int]:
        note("offset")
        return [x + self.by for x in previous_context.storage]


async def audit() -> str:
    note("audit")
    return "audited"


def stamp() -> str:
    note("stamp")
    return "stamped"


async def load(previous_context: Context) -> int:
    note("load")
    return sum(previous_context.storage) if isinstance(previous_context.storage, list) else -1


def build_edit(flow: AsyncFlow) -> None:
    if variant == "v2":
        flow.task.add(step=audit)  # inserted first: takes no input
    flow.task.add(step=extract)
    flow.task.add(step=functools.partial(scale, factor=10))
    flow.task.add(step=Offset(5))
    if variant == "v2":
        flow.task.add(step=stamp, key="stamp")  # inserted after offset: load's input changes
    flow.task.add(step=load)


async def top() -> int:
    note("top")
    return 1


async def left(previous_context: Context) -> int:
    note("left")
    return previous_context.storage + 10


async def right(previous_context: Context) -> int:
    note("right")
    return previous_context.storage + 100


async def bottom(previous_context: Context) -> dict[str, int]:
    note("bottom")
    return dict(previous_context.storage)


def build_diamond(flow: AsyncFlow) -> None:
    flow.task.add(step=top)
    flow.task.add(step=left, depends_on="top")
    flow.task.add(step=right, depends_on="top")
    flow.task.add(step=bottom, depends_on=["left", "right"])


async def pages() -> list[int]:
    note("pages")
    return list(range(10))


async def fetch(initial_context: Context) -> int:
    note(f"fetch.{initial_context.storage}")
    return initial_context.storage * 2


async def total(previous_context: Context) -> int:
    note("total")
    return sum(previous_context.storage)


def build_map(flow: AsyncFlow) -> None:
    flow.task.add(step=pages)
    flow.task.map(fetch, over="pages", key="fetch", max_concurrency=3)
    flow.task.add(step=total, depends_on="fetch")


async def prepare() -> int:
    note("prepare")
    return 7


def child_step(name: str) -> Any:
    async def body(previous_context: Context) -> Any:
        note(name)
        return [name, previous_context.storage]

    body.__qualname__ = name
    return action(body)


async def finish(previous_context: Context) -> Any:
    note("finish")
    return {"child said": previous_context.storage}


def build_child(flow: AsyncFlow) -> None:
    child = AsyncFlow()
    for name in ("c1", "c2", "c3"):
        child.task.add(step=child_step(name))
    flow.task.add(step=prepare)
    flow.task.add(step=child, key="sub")
    flow.task.add(step=finish)


BUILDERS = {
    "edit": build_edit,
    "diamond": build_diamond,
    "map": build_map,
    "child": build_child,
}


async def main() -> None:
    async with storage_from_url(url) as storage:
        flow = AsyncFlow(config=Config(storage=storage), workflow_id=f"g-{scenario}")
        BUILDERS[scenario](flow)
        mode = "sequential" if scenario in ("edit", "child") else "graph"
        await flow.start(mode=mode, resume=True)  # type: ignore[arg-type]
        print("keys " + ",".join(t.key for t in flow.result_task()))
        print("statuses " + ",".join(t.status.value for t in flow.result_task()))
        print(f"outputs {flow.result_storage()!r}")


anyio.run(main)
