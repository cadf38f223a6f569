"""The Dotflow 1.0.1 side of ``benchmarks/run.py``.

Imported in-process when ``dotflow`` is importable next to asyncflow, or run
as a script by another interpreter that has it (``--dotflow-python``); it
never imports asyncflow, so it works in a venv that only has Dotflow.

Steps are plain ``def`` functions: Dotflow runs an ``async def`` step through
``asyncio.run`` (a new event loop per step), which would make it look far
slower than its own fast path. Task ids are overwritten with stable ones
(``t0``, ``t1``, ...) after ``task.add``: Dotflow gives each task a random
ULID, so without this nothing would ever be skipped on resume.

Usage as a script: ``python _dotflow_side.py JSON`` where JSON is
``{"op": ..., ...}``; prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
import uuid
from typing import Any

WORKFLOW_ID = "5b0f5b8e-3f6c-4a8e-9a57-0c9a4f0c1d2e"  # Dotflow insists on a UUID


def _quiet() -> None:
    logging.disable(logging.CRITICAL)


def _step(previous_context: Any) -> int:
    return 1


def _payload_step(size: int) -> Any:
    value = "x" * size

    def step(previous_context: Any) -> str:
        return value

    return step


def _flow(n: int, storage: Any, step: Any = _step, workflow_id: str = WORKFLOW_ID) -> Any:
    from dotflow import Config, DotFlow, action

    flow = DotFlow(config=Config(storage=storage), workflow_id=workflow_id)
    decorated = action(step)
    for _ in range(n):
        flow.task.add(step=decorated)
    for i, task in enumerate(flow.task.queue):
        task.task_id = f"t{i}"  # stable ids, else resume can never match
    return flow


def _failed(flow: Any) -> int:
    return sum(1 for t in flow.task.queue if str(getattr(t.status, "value", t.status)) == "Failed")


def overhead(n: int, reps: int) -> dict[str, Any]:
    """Per-step µs of a sequential chain on Dotflow's in-memory storage."""
    from dotflow.providers import StorageDefault

    _quiet()
    runs = []
    for _ in range(reps):
        flow = _flow(n, StorageDefault(), workflow_id=str(uuid.uuid4()))
        start = time.perf_counter()
        flow.start()
        runs.append((time.perf_counter() - start) / n * 1e6)
        assert _failed(flow) == 0
    return {"us": statistics.median(runs), "runs": runs}


def file_chain(n: int, reps: int, root: str, size: int = 0) -> dict[str, Any]:
    """Per-step µs of a sequential chain on Dotflow's StorageFile (which does not fsync)."""
    from dotflow.providers import StorageFile

    _quiet()
    runs = []
    step = _payload_step(size) if size else _step
    for rep in range(reps):
        storage = StorageFile(path=f"{root}/dotflow-file-{n}-{size}-{rep}")
        flow = _flow(n, storage, step, workflow_id=str(uuid.uuid4()))
        start = time.perf_counter()
        flow.start()
        runs.append((time.perf_counter() - start) / n * 1e6)
        assert _failed(flow) == 0
    return {"us": statistics.median(runs), "runs": runs}


def prepare_resume(n: int, root: str) -> dict[str, Any]:
    """Run ``n`` steps to completion on files, so that a later resume skips them all."""
    from dotflow.providers import StorageFile

    _quiet()
    flow = _flow(n, StorageFile(path=root))
    flow.start(resume=True)
    assert _failed(flow) == 0
    return {"ok": True}


def resume(n: int, root: str) -> dict[str, Any]:
    """Time ``start(resume=True)`` over ``n`` checkpointed steps (run in a fresh process)."""
    from dotflow.providers import StorageFile

    _quiet()
    calls = []

    def never(previous_context: Any) -> int:
        calls.append(1)
        return 1

    flow = _flow(n, StorageFile(path=root), never)
    start = time.perf_counter()
    flow.start(resume=True)
    seconds = time.perf_counter() - start
    return {"us": seconds / n * 1e6, "reran": len(calls)}


OPS = {
    "overhead": overhead,
    "file_chain": file_chain,
    "prepare_resume": prepare_resume,
    "resume": resume,
}


def main() -> None:
    args = json.loads(sys.argv[1])
    op = OPS[args.pop("op")]
    print(json.dumps(op(**args)))


if __name__ == "__main__":
    main()
