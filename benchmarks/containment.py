"""What StorageFile's containment costs per write and per read.

    python benchmarks/containment.py [--n 300] [--rounds 3]

The baseline is the path-based write StorageFile used before containment
(``mkdir -p``, temp file, fsync, ``os.replace``, reopen the directory by path
to fsync it) and the path-based read. The contained version is
``StorageFile``'s own code: every directory of the key opened relative to its
parent with ``O_NOFOLLOW``, the record opened ``O_NOFOLLOW|O_NONBLOCK`` and
``fstat``'ed, rename and fsync through the parent's fd. Both run in this
process, in the same worker thread, interleaved round by round, on the same
filesystem; printed as microseconds per operation (median over calls, the two
variants alternating call by call so both see the same load; then the
median of rounds) and the ratio contained / baseline. ``read_many`` is timed
as one call over all keys against the same number of baseline reads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from asyncflow.providers import StorageFile

DATA = b'{"asyncflow":1,"output":{"x":1}}' * 4


def baseline_write(root: Path, key: str, durable: bool) -> None:
    target = root.joinpath(*key.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
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


def baseline_read(root: Path, key: str) -> tuple[bytes, str]:
    """The old ``_read_sync``: open by path, read, hash the version."""
    fd = os.open(os.path.join(root, key), os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    return data, hashlib.blake2b(data, digest_size=16).hexdigest()


def paired(
    base: Callable[[int], object], ours: Callable[[int], object], n: int
) -> tuple[float, float]:
    """Median microseconds per call of each, calls alternating so both see the same load."""
    base_times, ours_times = [], []
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        base(i)
        t1 = clock()
        ours(i)
        t2 = clock()
        base_times.append(t1 - t0)
        ours_times.append(t2 - t1)
    return statistics.median(base_times) * 1e6, statistics.median(ours_times) * 1e6


def base_writer(root: Path, durable: bool) -> Callable[[int], None]:
    return lambda i: baseline_write(root, f"wf/tasks/{i}.json", durable)


def ours_writer(storage: StorageFile) -> Callable[[int], str]:
    def run(i: int) -> str:
        key = f"wf/tasks/{i}.json"
        return storage._write_sync(key, storage._file(key), DATA, False, None)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        base_root, ours_root = Path(tmp) / "base", Path(tmp) / "ours"
        rows = []
        for durable in (True, False):
            ours = StorageFile(ours_root, durable=durable)
            base_us: list[float] = []
            ours_us: list[float] = []
            base_run, ours_run = base_writer(base_root, durable), ours_writer(ours)
            for _ in range(args.rounds):
                b, o = paired(base_run, ours_run, args.n)
                base_us.append(b)
                ours_us.append(o)
            rows.append((f"write durable={durable}", base_us, ours_us))
        reader = StorageFile(ours_root)
        keys = [f"wf/tasks/{i}.json" for i in range(args.n)]
        batch = [(key, reader._file(key)) for key in keys]
        base_us, ours_us, many_us = [], [], []
        for _ in range(args.rounds):
            b, o = paired(
                lambda i: baseline_read(base_root, keys[i]),
                lambda i: reader._read_many_sync([batch[i]]),
                args.n,
            )
            base_us.append(b)
            ours_us.append(o)
            start = time.perf_counter()
            reader._read_many_sync(batch)  # resume: one call, each directory walked once
            many_us.append((time.perf_counter() - start) / args.n * 1e6)
        rows.append(("read_many (resume)", base_us, many_us))
        rows.append(("read (one key)", base_us, ours_us))
    print(f"{'operation':<22} {'baseline us':>12} {'contained us':>13} {'ratio':>6}")
    for name, base, ours_list in rows:
        b, o = statistics.median(base), statistics.median(ours_list)
        print(f"{name:<22} {b:>12.1f} {o:>13.1f} {o / b:>6.2f}")


if __name__ == "__main__":
    main()
