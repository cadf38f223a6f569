"""``StorageS3``: checkpoints in an S3 bucket (or any S3-compatible server).

    pip install 'asyncflow-durable[s3]'
    export ASYNCFLOW_S3_BUCKET=my-bucket            # and optionally ASYNCFLOW_S3_PREFIX
    python examples/storage_s3.py

Everything else comes from botocore's usual environment: credentials
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance
roles...), region (``AWS_DEFAULT_REGION``) and, for an S3-compatible server
such as SeaweedFS or MinIO, the endpoint (``AWS_ENDPOINT_URL``).
Run it twice: the second run restores both steps from the bucket.
"""

from __future__ import annotations

import os

import anyio

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import StorageS3


@action
async def count() -> int:
    return 21


@action
async def double(previous_context: Context) -> int:
    return previous_context.storage * 2


async def main() -> AsyncFlow:
    storage = StorageS3(
        os.environ.get("ASYNCFLOW_S3_BUCKET", "asyncflow"),
        os.environ.get("ASYNCFLOW_S3_PREFIX", "examples"),
    )
    async with storage:  # closes the S3 client at the end
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="storage-s3")
        flow.task.add(step=count)
        flow.task.add(step=double)
        await flow.start(resume=True)
    where = f"s3://{storage.bucket}/{storage.prefix}"
    print(f"{flow.workflow_id} in {where}: {flow.status}")
    for task in flow.result_task():
        state = "restored" if task.restored else task.status.value.lower()
        print(f"  {task.name}: {state} -> {task.current_context.storage}")
    return flow


if __name__ == "__main__":
    flow = anyio.run(main)
    raise SystemExit(0 if flow.status == "completed" else 1)
