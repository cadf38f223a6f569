"""``StorageGCS``: checkpoints in a Google Cloud Storage bucket (or fake-gcs-server).

    pip install 'asyncflow-durable[gcs]'
    export ASYNCFLOW_GCS_BUCKET=my-bucket           # and optionally ASYNCFLOW_GCS_PREFIX
    python examples/storage_gcs.py

Credentials come from gcloud-aio's usual chain (``GOOGLE_APPLICATION_CREDENTIALS``,
the gcloud CLI's application default credentials, the metadata server).
For an emulator set ``STORAGE_EMULATOR_HOST=http://127.0.0.1:4443``; then no
credentials are sent. Run it twice: the second run restores both steps.
"""

from __future__ import annotations

import os

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import StorageGCS


@action
async def count() -> int:
    return 21


@action
async def double(previous_context: Context) -> int:
    return previous_context.storage * 2


async def main() -> AsyncFlow:
    storage = StorageGCS(
        os.environ.get("ASYNCFLOW_GCS_BUCKET", "asyncflow"),
        os.environ.get("ASYNCFLOW_GCS_PREFIX", "examples"),
    )
    async with storage:  # closes the HTTP session at the end
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="storage-gcs")
        flow.task.add(step=count)
        flow.task.add(step=double)
        await flow.start(resume=True)
    where = f"gs://{storage.bucket}/{storage.prefix}"
    print(f"{flow.workflow_id} in {where}: {flow.status}")
    for task in flow.result_task():
        state = "restored" if task.restored else task.status.value.lower()
        print(f"  {task.name}: {state} -> {task.current_context.storage}")
    return flow


if __name__ == "__main__":
    flow = anyio.run(main)
    raise SystemExit(0 if flow.status == "completed" else 1)
