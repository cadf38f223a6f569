"""Time and peak memory of checkpointing a large output, against the raw write of its bytes.

For each backend (file, S3 on a loopback SeaweedFS) and output size (1, 10,
100 MB by default) it measures, in this process:

* ``raw``: ``storage.write(key, payload)`` of the output's encoded bytes,
  already in memory: the floor;
* ``inline``: what the runner does for a step's output with
  ``offload_over=None``: ``encode_output`` (strict JSON), the record
  (``RecordEncoder``), the write;
* ``offload``: the same with ``offload_over`` below the size: the blob
  write (hash, conditional create) and the small record that refers to it;
* ``inline+sign``: ``inline`` with a ``signing_key``.

``offload, blob exists`` writes an output whose blob is already stored (an
equal output): the blob is read back and verified instead of written.

The output is ``{"rows": [...]}``, a list of 1 KB strings: JSON-encoding it
is cheap, so what shows is what asyncflow adds around the bytes. Time is the
median of ``--reps`` runs (without tracing); peak memory is the highest
Python allocation above the starting point while one run is traced with
``tracemalloc`` (the value itself, already built, is not counted), printed in
MB and as a multiple of the payload size.

Every run writes a new key and (but for "blob exists") a new output of the
same size, so nothing is deleted between runs and nothing is deduplicated.

Run from the repository root (starts SeaweedFS as the tests do)::

    python benchmarks/large_outputs.py                     # file and s3-seaweedfs
    python benchmarks/large_outputs.py --only file --sizes 1,10
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncflow._kernel.blobs import offload
from asyncflow._kernel.checkpoint import RecordEncoder, encode_output
from asyncflow.providers import Storage, StorageFile
from asyncflow.serializers import JSONSerializer
from tests.servers import start_seaweedfs

MB = 1_000_000
SERIALIZER = JSONSerializer()


def make_output(size: int) -> dict[str, Any]:
    rows = max(1, size // 1000)
    return {"rows": [f"{i:08d}" + "x" * 990 for i in range(rows)]}


def variant(value: dict[str, Any], n: int) -> dict[str, Any]:
    """``value`` with another first row: same size, another blob (no dedupe between runs)."""
    rows = value["rows"]
    return {"rows": [f"{n:08d}" + "y" * 990, *rows[1:]]}


def commit_path(
    storage: Storage, value: Any, *, offload_over: int | None, key: bytes | None
) -> Callable[[int], Awaitable[None]]:
    encoder = RecordEncoder("bench", SERIALIZER.name, key)

    async def run(n: int) -> None:
        output = value if n < 0 else variant(value, n)
        encoded = encode_output(SERIALIZER, output, "step", None)
        if offload_over is not None and len(encoded.payload) > offload_over:
            encoded = await offload(storage, "bench", encoded)
        data = encoder.encode(
            key=f"k{n}",
            task_id=0,
            step="step",
            module="bench",
            attempts=1,
            started_at=1.0,
            finished_at=2.0,
            input_digest=None,
            code_hash="h",
            output=encoded,
        )
        await storage.write(f"bench/tasks/k{n}.json", data)

    return run


async def measure(call: Callable[[int], Awaitable[None]], reps: int) -> tuple[float, int]:
    times = []
    for n in range(reps):
        gc.collect()
        start = time.perf_counter()
        await call(n)
        times.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        await call(reps)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return statistics.median(times), peak


async def cleanup(storage: Storage) -> None:
    async for name in storage.list("bench/"):
        await storage.delete(name)


async def run_backend(kind: str, storage: Storage, sizes: list[int], reps: int) -> None:
    for size_mb in sizes:
        value = make_output(size_mb * MB)
        payload = encode_output(SERIALIZER, value, "step", None).payload
        n = len(payload)

        async def raw(i: int, payload: bytes = payload) -> None:
            await storage.write(f"bench/raw/{i}", payload)

        offloading = commit_path(storage, value, offload_over=n // 2, key=None)

        async def same_blob(i: int, offloading: Any = offloading) -> None:
            await offloading(-1)

        await offloading(-1)  # the blob that "blob exists" finds
        variants: list[tuple[str, Callable[[int], Awaitable[None]]]] = [
            ("raw", raw),
            ("inline", commit_path(storage, value, offload_over=None, key=None)),
            ("inline+sign", commit_path(storage, value, offload_over=None, key=b"k" * 32)),
            ("offload", offloading),
            ("offload, blob exists", same_blob),
        ]
        results = {}
        for name, call in variants:
            results[name] = await measure(call, reps if size_mb < 100 else max(1, reps - 1))
        await cleanup(storage)
        raw_t, raw_peak = results["raw"]
        for name, (t, peak) in results.items():
            print(
                f"| {kind} | {size_mb} MB | {name} | {t * 1000:,.1f} | {t / raw_t:.2f}x"
                f" | {peak / MB:,.1f} | {peak / n:.2f}x | {(peak - raw_peak) / n:+.2f}x |",
                flush=True,
            )
        del value, payload


@contextlib.asynccontextmanager
async def backend(kind: str, stack: contextlib.ExitStack, root: Path) -> AsyncIterator[Storage]:
    if kind == "file":
        yield StorageFile(root / "file-store")
    elif kind == "s3-seaweedfs":
        from asyncflow.providers.s3 import StorageS3

        server = stack.enter_context(start_seaweedfs(root / kind))
        async with StorageS3(server.bucket, "large", **server.client_kwargs()) as storage:
            yield storage
    else:
        raise SystemExit(f"unknown backend {kind}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="file,s3-seaweedfs")
    parser.add_argument("--sizes", default="1,10,100", help="output sizes in MB")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        "| backend | output | path | time ms | vs raw | peak MB | peak / output"
        " | extra vs raw |\n|---|---|---|---:|---:|---:|---:|---:|"
    )
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        for kind in args.only.split(","):
            async with backend(kind, stack, Path(tmp)) as storage:
                await run_backend(kind, storage, sizes, args.reps)


if __name__ == "__main__":
    anyio.run(main)
