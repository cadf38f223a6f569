"""``StorageFile``: one JSON record per completed step in a local folder.

    FAIL=1 python examples/storage_file.py    # the last step fails; the others are saved
    python examples/storage_file.py           # a new process resumes: only the last step runs

Records are written atomically (temp file, fsync, rename, directory fsync).
The folder is $ASYNCFLOW_PATH (default ./.asyncflow); the layout is
``{workflow_id}/run.json``, ``{workflow_id}/lease.json`` and
``{workflow_id}/tasks/{key}.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import StorageFile


@action
async def download() -> dict[str, int]:
    return {"bytes": 1024}


@action
async def checksum(previous_context: Context) -> dict[str, object]:
    return {**previous_context.storage, "sha": "9f86d08"}


@action
def archive(previous_context: Context) -> str:  # sync: runs in a worker thread
    if os.environ.get("FAIL"):
        raise OSError("the archive volume is full (FAIL=1)")
    return f"archived {previous_context.storage['bytes']} bytes"


async def main() -> AsyncFlow:
    root = os.environ.get("ASYNCFLOW_PATH", ".asyncflow")
    flow = AsyncFlow(config=Config(storage=StorageFile(root)), workflow_id="storage-file")
    flow.task.add(step=download)
    flow.task.add(step=checksum)
    flow.task.add(step=archive)
    await flow.start(resume=True)
    print(f"{flow.workflow_id}: {flow.status}")
    for task in flow.result_task():
        state = "restored" if task.restored else task.status.value.lower()
        print(f"  {task.name}: {state}")
    records = sorted(p.name for p in (Path(root) / flow.workflow_id / "tasks").iterdir())
    print(f"records in {root}/{flow.workflow_id}/tasks: {records}")
    return flow


if __name__ == "__main__":
    flow = anyio.run(main)
    raise SystemExit(0 if flow.status == "completed" else 1)
