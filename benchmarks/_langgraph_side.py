"""The LangGraph side of ``benchmarks/peers.py``: run by its own virtualenv's Python.

Written as LangGraph's docs show: a ``StateGraph`` over a ``TypedDict``
state, one node per step (async functions, run with ``ainvoke``), edges in a
chain, compiled with a checkpointer: ``AsyncSqliteSaver.from_conn_string``
(it sets WAL mode itself) or ``InMemorySaver``, a ``thread_id`` per run and
the default durability (``"async"``: a step's checkpoint is written while the
next step runs, and every write is awaited before ``ainvoke`` returns). The
fan-out is the docs' map-reduce: a conditional edge returns one ``Send`` per
item, and a reducer (``operator.add``) gathers the workers' outputs.

A resume is the docs' way to continue a thread: ``ainvoke(None, config)``
with the same ``thread_id``, in a new process, after a run that died in its
last node. It must run only that node: else this script fails loudly.
"""

from __future__ import annotations

import itertools
import operator
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import _side_common as common

HEADER = """
import os
from _side_common import CRASH_EXIT, payload

CALLS = []
CRASH = [False]
"""

NODE = """
async def step_{i}(state):
    CALLS.append({i})
    if CRASH[0] and {i} == LAST:
        os._exit(CRASH_EXIT)
    return {{"payload": payload({i}, state.get("payload"))}}
"""

IO_NODE = """
async def io_{i}(state):
    await asyncio.sleep(0.001)
    return {{"value": {i}}}
"""


class State(TypedDict, total=False):
    payload: Any
    value: Any


def steps_module(root: str, n: int) -> Any:
    source = HEADER + f"LAST = {n - 1}\n" + "".join(NODE.format(i=i) for i in range(n))
    return common.import_generated(root, f"lg_steps_{n}", source)


def chain_graph(module: Any, prefix: str, n: int, checkpointer: Any) -> Any:
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(State)
    names = [f"{prefix}_{i}" for i in range(n)]
    for name in names:
        builder.add_node(name, getattr(module, name))
    builder.add_edge(START, names[0])
    for before, after in itertools.pairwise(names):
        builder.add_edge(before, after)
    builder.add_edge(names[-1], END)
    return builder.compile(checkpointer=checkpointer)


async def warm() -> None:
    """One tiny in-memory run first: LangGraph imports much of itself on first use."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    async def node(state: State) -> dict[str, Any]:
        return {"value": 1}

    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    await builder.compile(checkpointer=InMemorySaver()).ainvoke({}, config("warm", 1))


def config(thread: str, n: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": n + 10}


async def chain(n: int, root: str, storage: str = "sqlite") -> dict[str, Any]:
    """A fresh run of ``n`` distinct nodes; µs per step of ``ainvoke``."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    module = steps_module(root, n)
    await warm()
    if storage == "memory":
        graph = chain_graph(module, "step", n, InMemorySaver())
        clock = time.perf_counter()
        await graph.ainvoke({"payload": None}, config("chain", n))
        seconds = time.perf_counter() - clock
    else:
        async with AsyncSqliteSaver.from_conn_string(str(Path(root) / "chain.db")) as saver:
            graph = chain_graph(module, "step", n, saver)
            clock = time.perf_counter()
            await graph.ainvoke({"payload": None}, config("chain", n))
            seconds = time.perf_counter() - clock
    if len(module.CALLS) != n:
        common.fail(f"LangGraph ran {len(module.CALLS)} of {n} nodes")
    return {"us": seconds / n * 1e6}


async def prepare_resume(n: int, root: str) -> None:
    """Run ``n + 1`` nodes and die in the last one, every checkpoint before it written."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    module = steps_module(root, n + 1)
    module.CRASH[0] = True
    async with AsyncSqliteSaver.from_conn_string(str(Path(root) / "resume.db")) as saver:
        graph = chain_graph(module, "step", n + 1, saver)
        # "sync": the checkpoint of node n - 1 is committed before node n starts (and dies).
        await graph.ainvoke({"payload": None}, config("resume", n + 1), durability="sync")
    common.fail("the prepare run was meant to die in its last node")


async def resume(n: int, root: str) -> dict[str, Any]:
    """In a new process: ``ainvoke(None)`` on the thread runs only its last node."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    module = steps_module(root, n + 1)
    await warm()
    async with AsyncSqliteSaver.from_conn_string(str(Path(root) / "resume.db")) as saver:
        graph = chain_graph(module, "step", n + 1, saver)
        clock = time.perf_counter()
        result = await graph.ainvoke(None, config("resume", n + 1))
        seconds = time.perf_counter() - clock
    if [n] != module.CALLS or result["payload"]["step"] != n:
        common.fail(f"LangGraph's resume ran nodes {module.CALLS[:5]}..., not only node {n}")
    return {"ms": seconds * 1e3}


class FanState(TypedDict, total=False):
    items: list[int]
    results: Annotated[list[Any], operator.add]
    total: int


async def fanout(n: int, root: str) -> dict[str, Any]:
    """``items`` -> one ``Send`` per item to ``work`` -> ``total``, on SQLite."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    calls: list[int] = []

    async def items(state: FanState) -> dict[str, Any]:
        return {"items": list(range(n))}

    def spread(state: FanState) -> list[Any]:
        return [Send("work", {"item": item}) for item in state["items"]]

    async def work(state: dict[str, Any]) -> dict[str, Any]:
        calls.append(state["item"])
        return {"results": [common.payload(state["item"], None)]}

    async def total(state: FanState) -> dict[str, Any]:
        return {"total": len(state["results"])}

    builder = StateGraph(FanState)
    builder.add_node("items", items)
    builder.add_node("work", work)
    builder.add_node("total", total)
    builder.add_edge(START, "items")
    builder.add_conditional_edges("items", spread, ["work"])
    builder.add_edge("work", "total")
    builder.add_edge("total", END)
    await warm()
    async with AsyncSqliteSaver.from_conn_string(str(Path(root) / "fan.db")) as saver:
        graph = builder.compile(checkpointer=saver)
        clock = time.perf_counter()
        result = await graph.ainvoke({}, config("fan", 10))
        seconds = time.perf_counter() - clock
    if sorted(calls) != list(range(n)) or result["total"] != n:
        common.fail(f"LangGraph's fan-out ran {len(calls)} of {n} workers")
    return {"ms": seconds * 1e3}


async def io_chain(n: int, root: str) -> dict[str, Any]:
    """``n`` nodes that each await 1 ms of I/O, on SQLite, against plain awaits."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    source = "import asyncio\n" + "".join(IO_NODE.format(i=i) for i in range(n))
    module = common.import_generated(root, f"lg_io_{n}", source)
    await warm()

    async with AsyncSqliteSaver.from_conn_string(str(Path(root) / "io.db")) as saver:
        graph = chain_graph(module, "io", n, saver)
        return await common.io_ratio(n, lambda: graph.ainvoke({}, config("io", n)))


def first_run(root: str) -> dict[str, Any]:
    """In a fresh process: import LangGraph, then a 2-node run on SQLite, each timed."""
    import asyncio

    clock = time.perf_counter()
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    imported = time.perf_counter()
    calls: list[int] = []

    async def one(state: State) -> dict[str, Any]:
        calls.append(1)
        return {"payload": common.payload(1, None)}

    async def two(state: State) -> dict[str, Any]:
        calls.append(2)
        return {"payload": common.payload(2, state.get("payload"))}

    async def main() -> None:
        builder = StateGraph(State)
        builder.add_node("one", one)
        builder.add_node("two", two)
        builder.add_edge(START, "one")
        builder.add_edge("one", "two")
        builder.add_edge("two", END)
        async with AsyncSqliteSaver.from_conn_string(str(Path(root) / "first.db")) as saver:
            graph = builder.compile(checkpointer=saver)
            await graph.ainvoke({}, config("first", 2))

    asyncio.run(main())
    done = time.perf_counter()
    if calls != [1, 2] or not os.path.exists(Path(root) / "first.db"):
        common.fail("LangGraph's first run did not run and record both nodes")
    return {"import_ms": (imported - clock) * 1e3, "ms": (done - imported) * 1e3}


if __name__ == "__main__":
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    common.main(globals())
