"""Which way should StorageFile do its I/O? One worker-thread hop vs aiofiles.

    python benchmarks/file_io.py [--n 300]

Both variants write a small record durably (temp file, fsync, os.replace,
directory fsync) and then without fsync, so the second figure isolates the
cost of the thread hops themselves. Printed as microseconds per write and as
a ratio to the single-hop variant.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiofiles
import aiofiles.os
import anyio
import anyio.to_thread

DATA = b'{"asyncflow":1,"output":{"x":1}}' * 4


def write_sync(target: Path, durable: bool) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, DATA)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    if durable:
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


async def one_hop(target: Path, durable: bool) -> None:
    await anyio.to_thread.run_sync(write_sync, target, durable)


async def with_aiofiles(target: Path, durable: bool) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    async with aiofiles.open(tmp, "wb") as handle:
        await handle.write(DATA)
        await handle.flush()
        if durable:
            await anyio.to_thread.run_sync(os.fsync, handle.fileno())
    await aiofiles.os.replace(tmp, target)
    if durable:
        dfd = await anyio.to_thread.run_sync(os.open, target.parent, os.O_RDONLY)
        await anyio.to_thread.run_sync(os.fsync, dfd)
        await anyio.to_thread.run_sync(os.close, dfd)


async def measure(fn, root: Path, n: int, durable: bool) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for rep in range(3):
        start = time.perf_counter()
        for i in range(n):
            await fn(root / f"r{rep}-{i}.json", durable)
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        print(f"{'variant':<28}{'durable µs':>12}{'ratio':>8}{'no-fsync µs':>14}{'ratio':>8}")
        variants = (("one anyio thread hop", one_hop), ("aiofiles (hop per call)", with_aiofiles))
        figures = []
        for _, fn in variants:
            figures.append((await measure(fn, root, n, True), await measure(fn, root, n, False)))
        base_d, base_n = figures[0]
        for (name, _), (d, nd) in zip(variants, figures, strict=True):
            print(f"{name:<28}{d:>12.1f}{d / base_d:>8.2f}{nd:>14.1f}{nd / base_n:>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    anyio.run(main, parser.parse_args().n)
