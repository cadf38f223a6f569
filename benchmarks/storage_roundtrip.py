"""Put / get / list / bulk-read figures for every storage backend.

Starts the same loopback servers as the test suite (SeaweedFS, moto,
fake-gcs-server; see ``tests/servers.py``) and measures, per backend:

* ``put``: sequential writes of a ~300-byte record, median and p95 latency;
* ``get``: sequential reads of those records;
* ``cas``: sequential compare-and-swap writes (``if_version``), as a lease
  heartbeat does;
* ``list``: one listing of ``--keys`` keys (S3/GCS: more than one page);
* ``resume``: what a resume costs: one listing plus reading every record
  with 32 reads in flight, as the engine does;
* ``put x32``: throughput of writes with 32 in flight.

Run from the repository root::

    python benchmarks/storage_roundtrip.py            # all backends
    python benchmarks/storage_roundtrip.py --only s3-seaweedfs --keys 2000

Figures depend on the machine; ``docs/storage.md`` records one run.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncflow.providers import Storage, StorageDefault, StorageFile, delete_many
from tests.servers import start_fake_gcs, start_moto, start_seaweedfs

RECORD = (
    b'{"format": 1, "output": {"rows": 1234, "path": "s3://x/y"}, "meta": "' + b"x" * 200 + b'"}'
)


async def _bounded(concurrency: int, calls: list[Callable[[], Awaitable[Any]]]) -> None:
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with limiter:
            await call()

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(one, call)


def _ms(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    return f"{statistics.median(samples) * 1000:7.2f} / {p95 * 1000:7.2f}"


async def measure(storage: Storage, ops: int, keys: int) -> dict[str, str]:
    base = f"bench-{secrets.token_hex(4)}"
    put: list[float] = []
    for i in range(ops):
        t = time.perf_counter()
        await storage.write(f"{base}/seq/{i:05d}.json", RECORD)
        put.append(time.perf_counter() - t)
    get: list[float] = []
    for i in range(ops):
        t = time.perf_counter()
        await storage.read(f"{base}/seq/{i:05d}.json")
        get.append(time.perf_counter() - t)
    cas: list[float] = []
    version = await storage.write(f"{base}/lease.json", RECORD)
    for _ in range(ops):
        t = time.perf_counter()
        version = await storage.write(f"{base}/lease.json", RECORD + b" ", if_version=version)
        cas.append(time.perf_counter() - t)

    names = [f"{base}/tasks/{i:05d}.json" for i in range(keys)]
    t = time.perf_counter()
    await _bounded(32, [lambda k=k: storage.write(k, RECORD) for k in names])
    put_parallel = keys / (time.perf_counter() - t)

    t = time.perf_counter()
    listed = [k async for k in storage.list(f"{base}/tasks/")]
    list_s = time.perf_counter() - t
    assert len(listed) == keys, (len(listed), keys)

    t = time.perf_counter()
    found = [k async for k in storage.list(f"{base}/tasks/")]
    await _bounded(32, [lambda k=k: storage.read(k) for k in found])
    resume_s = time.perf_counter() - t

    everything = [f"{base}/seq/{i:05d}.json" for i in range(ops)] + names + [f"{base}/lease.json"]
    await delete_many(storage, everything, concurrency=32)
    return {
        "put ms (median / p95)": _ms(put),
        "get ms (median / p95)": _ms(get),
        "cas ms (median / p95)": _ms(cas),
        f"list {keys} keys ms": f"{list_s * 1000:9.1f}",
        f"resume {keys} records ms": f"{resume_s * 1000:9.1f}",
        "put x32 ops/s": f"{put_parallel:9.0f}",
    }


@contextlib.asynccontextmanager
async def backend(kind: str, stack: contextlib.ExitStack, root: Path) -> AsyncIterator[Storage]:
    if kind == "memory":
        yield StorageDefault()
    elif kind == "file":
        yield StorageFile(root / "file-store")
    elif kind.startswith("s3-"):
        from asyncflow.providers.s3 import StorageS3

        start = start_seaweedfs if kind == "s3-seaweedfs" else start_moto
        server = stack.enter_context(start(root / kind))
        if kind == "s3-moto":
            server.boto3_client().create_bucket(Bucket=server.bucket)
        async with StorageS3(server.bucket, "bench", **server.client_kwargs()) as storage:
            yield storage
    elif kind == "gcs":
        from asyncflow.providers.gcs import StorageGCS

        server_gcs = stack.enter_context(start_fake_gcs(root / kind))
        async with StorageGCS(server_gcs.bucket, "bench", api_root=server_gcs.url) as storage:
            yield storage
    else:
        raise SystemExit(f"unknown backend {kind}")


KINDS = ["memory", "file", "s3-seaweedfs", "s3-moto", "gcs"]


async def main(args: argparse.Namespace) -> None:
    rows: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        for kind in args.only or KINDS:
            root = Path(tmp)
            (root / kind).mkdir(exist_ok=True)
            async with backend(kind, stack, root) as storage:
                await measure(storage, 5, 5)  # warm up connections and caches
                rows[kind] = await measure(storage, args.ops, args.keys)
            print(f"measured {kind}", file=sys.stderr)
    columns = list(next(iter(rows.values())))
    print("| backend | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for kind, row in rows.items():
        print(f"| {kind} | " + " | ".join(row[c].strip() for c in columns) + " |")


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=200, help="sequential operations per figure")
    parser.add_argument("--keys", type=int, default=1500, help="keys for list/resume figures")
    parser.add_argument("--only", action="append", choices=KINDS, help="backend (repeatable)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    anyio.run(main, _args())
