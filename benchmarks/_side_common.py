"""What every side of ``benchmarks/peers.py`` shares: standard library only.

Each ``_*_side.py`` script runs in its own system's virtualenv and imports
this module from its own directory (a script's directory is on ``sys.path``).
The workloads are the same for every system: each step gets the previous
step's payload and returns a new one of about 300 bytes of JSON, so every
checkpoint holds a real value, not a bare integer.

Usage of a side script: ``python _X_side.py JSON``, where JSON is
``{"op": ..., ...}``; it prints one JSON object on stdout as its last line.
A workload that did not checkpoint (a resume that re-ran a completed step)
exits with an error: the benchmark must never time a system that skipped
its durability.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CRASH_EXIT = 3  # the exit code of a prepare run that "crashes" before its last step
TEXT = "x" * 200


def payload(step: int, previous: Any) -> dict[str, Any]:
    """A step's output: its number, the previous step's number, a list and a text."""
    before = previous.get("step") if isinstance(previous, dict) else None
    return {"step": step, "previous": before, "items": list(range(10)), "text": TEXT}


def import_generated(root: str, name: str, source: str) -> Any:
    """Write ``source`` as module ``name`` under ``root`` and import it."""
    directory = Path(root)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        path.write_text(source)
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    return importlib.import_module(name)


async def plain_io(n: int) -> float:
    """µs per step of ``n`` plain ``await asyncio.sleep(0.001)``: the 1 ms I/O baseline."""
    clock = time.perf_counter()
    for _ in range(n):
        await asyncio.sleep(0.001)
    return (time.perf_counter() - clock) / n * 1e6


async def io_ratio(n: int, run: Callable[[], Any]) -> dict[str, Any]:
    """The system's chain of ``n`` 1 ms steps against plain awaits before and after it."""
    before = await plain_io(n)
    clock = time.perf_counter()
    await run()
    system = (time.perf_counter() - clock) / n * 1e6
    after = await plain_io(n)
    plain = statistics.mean([before, after])
    return {"us": system, "plain_us": plain, "ratio": system / plain}


def fail(message: str) -> None:
    """Stop loudly: a figure from a system that did not checkpoint is worthless."""
    print(f"CHECKPOINT CHECK FAILED: {message}", file=sys.stderr)
    raise SystemExit(2)


OPS = ("chain", "prepare_resume", "resume", "fanout", "io_chain", "first_run")


def main(side: dict[str, Any]) -> None:
    """Run the op named in ``argv[1]``, one of ``OPS`` defined by the side script ``side``."""
    args = json.loads(sys.argv[1])
    name = args.pop("op")
    if name not in OPS:
        raise SystemExit(f"unknown op {name!r}: one of {', '.join(OPS)}")
    op: Callable[..., Any] = side[name]
    if "root" in args:
        Path(args["root"]).mkdir(parents=True, exist_ok=True)
    result = op(**args)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    print(json.dumps(result))
