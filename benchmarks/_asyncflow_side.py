"""The asyncflow side of ``benchmarks/peers.py``: run by the repository's own Python.

Written as the docs show: ``@action`` steps in a module, ``AsyncFlow`` with
``StorageFile`` (default durability ``sync``: each record fsynced and renamed
before the next step), ``task.map`` for the fan-out. ``resume`` takes
``config``, keyword arguments for ``Config``: the hook for storage layouts
to come (record packs), measured by the same workload.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _side_common as common

HEADER = """
import os
from _side_common import CRASH_EXIT, payload
from asyncflow import action

CALLS = []
CRASH = [False]
"""

STEP = """
@action
async def step_{i}(previous_context=None):
    CALLS.append({i})
    if CRASH[0] and {i} == LAST:
        os._exit(CRASH_EXIT)
    return payload({i}, previous_context.storage if previous_context is not None else None)
"""

IO_STEP = """
@action
async def io_{i}(previous_context=None):
    await anyio.sleep(0.001)
    return {i}
"""


def steps_module(root: str, n: int) -> Any:
    source = HEADER + f"LAST = {n - 1}\n" + "".join(STEP.format(i=i) for i in range(n))
    return common.import_generated(root, f"af_steps_{n}", source)


async def warm() -> None:
    """One tiny in-memory run first, as for every system: what a first run imports is
    measured by ``first_run``, not here."""
    from asyncflow import AsyncFlow, Config, action
    from asyncflow.providers import StorageDefault

    @action
    async def node() -> int:
        return 1

    flow = AsyncFlow(config=Config(storage=StorageDefault()), workflow_id="warm")
    flow.task.add(step=node)
    await flow.start()


def chain_flow(module: Any, n: int, storage: Any, workflow_id: str, **config: Any) -> Any:
    from asyncflow import AsyncFlow, Config

    flow = AsyncFlow(config=Config(storage=storage, **config), workflow_id=workflow_id)
    for i in range(n):
        flow.task.add(getattr(module, f"step_{i}"), key=f"s{i}")
    return flow


async def chain(n: int, root: str, storage: str = "file") -> dict[str, Any]:
    """A fresh run of ``n`` distinct steps; µs per step of ``start()``."""
    from asyncflow.providers import StorageDefault, StorageFile

    module = steps_module(root, n)
    backend = StorageFile(Path(root) / "store") if storage == "file" else StorageDefault()
    flow = chain_flow(module, n, backend, "chain")
    await warm()
    clock = time.perf_counter()
    await flow.start()
    seconds = time.perf_counter() - clock
    if len(module.CALLS) != n:
        common.fail(f"asyncflow ran {len(module.CALLS)} of {n} steps")
    return {"us": seconds / n * 1e6}


async def prepare_resume(n: int, root: str, config: dict[str, Any] | None = None) -> None:
    """Run ``n + 1`` steps durably and die in the last one: ``n`` records to resume from."""
    from asyncflow.providers import StorageFile

    module = steps_module(root, n + 1)
    module.CRASH[0] = True
    flow = chain_flow(module, n + 1, StorageFile(Path(root) / "store"), "resume", **(config or {}))
    await flow.start()
    common.fail("the prepare run was meant to die in its last step")


async def resume(n: int, root: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """In a new process: ``start(resume=True)`` restores ``n`` steps and runs the last one."""
    from asyncflow.providers import StorageFile

    module = steps_module(root, n + 1)
    flow = chain_flow(module, n + 1, StorageFile(Path(root) / "store"), "resume", **(config or {}))
    await warm()
    clock = time.perf_counter()
    await flow.start(resume=True)
    seconds = time.perf_counter() - clock
    if [n] != module.CALLS:
        common.fail(f"asyncflow's resume ran steps {module.CALLS[:5]}..., not only step {n}")
    return {"ms": seconds * 1e3}


async def fanout(n: int, root: str) -> dict[str, Any]:
    """``items`` -> ``task.map`` over ``n`` items -> ``total``, on files."""
    from asyncflow import AsyncFlow, Config, action
    from asyncflow.providers import StorageFile

    calls: list[int] = []

    @action
    async def items() -> list[int]:
        return list(range(n))

    @action
    async def work(initial_context: Any) -> dict[str, Any]:
        calls.append(initial_context.storage)
        return common.payload(initial_context.storage, None)

    @action
    async def total(previous_context: Any) -> int:
        return len(previous_context.storage)

    flow = AsyncFlow(config=Config(storage=StorageFile(Path(root) / "fan")), workflow_id="fan")
    flow.task.add(step=items)
    flow.task.map(work, over="items", key="work")
    flow.task.add(step=total, depends_on="work")
    await warm()
    clock = time.perf_counter()
    await flow.start(mode="graph")
    seconds = time.perf_counter() - clock
    if sorted(calls) != list(range(n)):
        common.fail(f"asyncflow's fan-out ran {len(calls)} of {n} children")
    return {"ms": seconds * 1e3}


async def io_chain(n: int, root: str, durability: str = "sync") -> dict[str, Any]:
    """``n`` steps that each await 1 ms of I/O, on files, against plain awaits."""
    from asyncflow import AsyncFlow, Config
    from asyncflow.providers import StorageFile

    source = "import anyio\nfrom asyncflow import action\n" + "".join(
        IO_STEP.format(i=i) for i in range(n)
    )
    module = common.import_generated(root, f"af_io_{n}", source)

    store = StorageFile(Path(root) / f"io-{durability}")
    flow = AsyncFlow(config=Config(storage=store, durability=durability), workflow_id="io")
    for i in range(n):
        flow.task.add(getattr(module, f"io_{i}"), key=f"s{i}")
    await warm()
    return await common.io_ratio(n, flow.start)


def first_run(root: str, preload_backend: bool = False) -> dict[str, Any]:
    """In a fresh process: ``import asyncflow``, then a 2-step durable run, each timed.

    ``preload_backend``: anyio's asyncio backend imported with asyncflow
    instead of by the first run's first anyio call (a proposal, measured).
    """
    clock = time.perf_counter()
    import anyio

    from asyncflow import AsyncFlow, Config, action
    from asyncflow.providers import StorageFile

    if preload_backend:
        importlib.import_module("anyio._backends._asyncio")
    imported = time.perf_counter()
    calls: list[int] = []

    @action
    async def one() -> dict[str, Any]:
        calls.append(1)
        return common.payload(1, None)

    @action
    async def two(previous_context: Any) -> dict[str, Any]:
        calls.append(2)
        return common.payload(2, previous_context.storage)

    async def main() -> None:
        flow = AsyncFlow(config=Config(storage=StorageFile(Path(root) / "first")), workflow_id="f")
        flow.task.add(step=one)
        flow.task.add(step=two)
        await flow.start()

    anyio.run(main)
    done = time.perf_counter()
    if calls != [1, 2] or not os.path.exists(Path(root) / "first" / "f"):
        common.fail("asyncflow's first run did not run and record both steps")
    return {"import_ms": (imported - clock) * 1e3, "ms": (done - imported) * 1e3}


if __name__ == "__main__":
    common.main(globals())
