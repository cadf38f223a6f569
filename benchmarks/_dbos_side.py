"""The DBOS side of ``benchmarks/peers.py``: run by its own virtualenv's Python.

Written as DBOS's docs show: ``DBOS(config=...)`` with a SQLite system
database (``sqlite:///...``, DBOS's default kind; its own journal mode, which
is SQLite's rollback journal), ``DBOS.launch()``, ``@DBOS.step()`` async
functions called one after another by an async ``@DBOS.workflow()``. The
fan-out runs the steps concurrently with ``asyncio.gather`` inside the
workflow (each call takes its step id when it is made, so a recovery replays
them in the same order).

A resume is DBOS's own crash recovery: a new process constructs DBOS and
calls ``DBOS.launch()``, which finds the workflow left PENDING by the run
that died in its last step and runs it again, every completed step answered
from the database. It must run only the last step: else this script fails.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import _side_common as common

HEADER = """
import os
from dbos import DBOS
from _side_common import CRASH_EXIT, payload

CALLS = []
CRASH = [False]
"""

STEP = """
@DBOS.step()
async def step_{i}(previous):
    CALLS.append({i})
    if CRASH[0] and {i} == LAST:
        os._exit(CRASH_EXIT)
    return payload({i}, previous)
"""

FOOTER = """
STEPS = [{names}]


@DBOS.workflow()
async def chain():
    value = None
    for step in STEPS:
        value = await step(value)
    return value
"""

IO_STEP = """
@DBOS.step()
async def io_{i}():
    await asyncio.sleep(0.001)
    return {i}
"""

IO_FOOTER = """
IO_STEPS = [{names}]


@DBOS.workflow()
async def io_chain():
    for step in IO_STEPS:
        await step()
"""

WARM = """
from dbos import DBOS


@DBOS.step()
async def warm_step():
    return 1


@DBOS.workflow()
async def warm():
    return await warm_step()
"""


def steps_module(root: str, n: int) -> Any:
    names = ", ".join(f"step_{i}" for i in range(n))
    source = (
        HEADER
        + f"LAST = {n - 1}\n"
        + "".join(STEP.format(i=i) for i in range(n))
        + FOOTER.format(names=names)
    )
    return common.import_generated(root, f"dbos_steps_{n}", source)


def start_dbos(root: str, name: str) -> Any:
    from dbos import DBOS

    url = f"sqlite:///{Path(root) / (name + '.sqlite')}"
    return DBOS(config={"name": "bench", "system_database_url": url})


async def warm(root: str) -> None:
    """One tiny workflow after launch, before timing (as for every system)."""
    module = common.import_generated(root, "dbos_warm", WARM)
    await module.warm()


async def chain(n: int, root: str) -> dict[str, Any]:
    """A fresh run of ``n`` distinct steps; µs per step of the workflow call."""
    from dbos import DBOS

    module = steps_module(root, n)
    start_dbos(root, "chain")
    DBOS.launch()
    try:
        await warm(root)
        clock = time.perf_counter()
        await module.chain()
        seconds = time.perf_counter() - clock
    finally:
        DBOS.destroy()
    if len(module.CALLS) != n:
        common.fail(f"DBOS ran {len(module.CALLS)} of {n} steps")
    return {"us": seconds / n * 1e6}


async def prepare_resume(n: int, root: str) -> None:
    """Run ``n + 1`` steps and die in the last one: the workflow stays PENDING."""
    from dbos import DBOS, SetWorkflowID

    module = steps_module(root, n + 1)
    module.CRASH[0] = True
    start_dbos(root, "resume")
    DBOS.launch()
    with SetWorkflowID("resume"):
        await module.chain()
    common.fail("the prepare run was meant to die in its last step")


async def resume(n: int, root: str) -> dict[str, Any]:
    """In a new process: ``DBOS.launch()`` recovers the workflow; time until its result."""
    from dbos import DBOS

    module = steps_module(root, n + 1)
    start_dbos(root, "resume")
    clock = time.perf_counter()
    DBOS.launch()
    launched = time.perf_counter()
    try:
        handle = await DBOS.retrieve_workflow_async("resume")
        result = await handle.get_result(polling_interval_sec=0.002)
        seconds = time.perf_counter() - clock
    finally:
        DBOS.destroy()
    if [n] != module.CALLS or result["step"] != n:
        common.fail(f"DBOS's recovery ran steps {module.CALLS[:5]}..., not only step {n}")
    return {"ms": seconds * 1e3, "launch_ms": (launched - clock) * 1e3}


FAN = """
import asyncio
from dbos import DBOS
from _side_common import payload

CALLS = []


@DBOS.step()
async def work(item):
    CALLS.append(item)
    return payload(item, None)


@DBOS.step()
async def items(n):
    return list(range(n))


@DBOS.workflow()
async def fan(n):
    results = await asyncio.gather(*(work(item) for item in await items(n)))
    return len(results)
"""


async def fanout(n: int, root: str) -> dict[str, Any]:
    """``items`` -> ``n`` concurrent ``work`` steps -> their count, on SQLite."""
    from dbos import DBOS

    module = common.import_generated(root, "dbos_fan", FAN)
    start_dbos(root, "fan")
    DBOS.launch()
    try:
        await warm(root)
        clock = time.perf_counter()
        total = await module.fan(n)
        seconds = time.perf_counter() - clock
    finally:
        DBOS.destroy()
    if sorted(module.CALLS) != list(range(n)) or total != n:
        common.fail(f"DBOS's fan-out ran {len(module.CALLS)} of {n} steps")
    return {"ms": seconds * 1e3}


async def io_chain(n: int, root: str) -> dict[str, Any]:
    """``n`` steps that each await 1 ms of I/O, on SQLite, against plain awaits."""
    from dbos import DBOS

    names = ", ".join(f"io_{i}" for i in range(n))
    source = (
        "import asyncio\nfrom dbos import DBOS\n"
        + "".join(IO_STEP.format(i=i) for i in range(n))
        + IO_FOOTER.format(names=names)
    )
    module = common.import_generated(root, f"dbos_io_{n}", source)
    start_dbos(root, "io")
    DBOS.launch()
    try:
        await warm(root)
        return await common.io_ratio(n, module.io_chain)
    finally:
        DBOS.destroy()


def first_run(root: str) -> dict[str, Any]:
    """In a fresh process: import DBOS, then launch and a 2-step workflow, each timed."""
    clock = time.perf_counter()
    from dbos import DBOS

    imported = time.perf_counter()
    calls: list[int] = []

    @DBOS.step()
    async def one() -> dict[str, Any]:
        calls.append(1)
        return common.payload(1, None)

    @DBOS.step()
    async def two(previous: Any) -> dict[str, Any]:
        calls.append(2)
        return common.payload(2, previous)

    @DBOS.workflow()
    async def both() -> Any:
        return await two(await one())

    start_dbos(root, "first")
    DBOS.launch()
    asyncio.run(both())
    done = time.perf_counter()
    DBOS.destroy()
    if calls != [1, 2] or not os.path.exists(Path(root) / "first.sqlite"):
        common.fail("DBOS's first run did not run and record both steps")
    return {"import_ms": (imported - clock) * 1e3, "ms": (done - imported) * 1e3}


if __name__ == "__main__":
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    common.main(globals())
