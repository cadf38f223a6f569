"""The physical floors on this machine that asyncflow's own figures are read against.

    python benchmarks/floors.py                  # all three sections
    python benchmarks/floors.py --only fsync --dir /mnt/data
    python benchmarks/floors.py --quick          # tiny sizes, a smoke check

asyncflow cannot be faster than the primitives it is built on, so before
calling one of its overheads "large" it helps to know what the machine itself
charges. Three such floors are measured:

1. ``hop``: latency of one round trip to a worker thread and back with an
   otherwise idle event loop, for ``anyio.to_thread.run_sync``,
   ``loop.run_in_executor`` on a one-thread pool, and a persistent thread fed
   by a ``queue.SimpleQueue`` that answers through ``call_soon_threadsafe``
   (about the cheapest hop Python offers). Then the overlap floor: 1 ms
   steps, each handing a 0.6 ms blocking job to a thread, whose completion
   wakes the loop (``run_in_executor``, ``anyio.to_thread``) or does not (a
   long-lived thread that wakes the loop only when it waits: asyncflow's
   ``StorageFile`` writer).
2. ``fsync``: durable small-file writes, 64 files per batch, per file:
   sequential (write a temp file, fsync, ``os.replace``, fsync the directory);
   64 threads each doing that; group commit with one ``syncfs`` (Linux only,
   through ctypes; skipped elsewhere); group commit with an fsync per file from
   one thread; and that fsync per file from 8 threads. The directory fsync is
   paid once per batch in the group variants. Variants are interleaved batch
   by batch so that drift in the disk's state hits them all alike.
3. ``rss``: peak resident memory per task of 100 000 trivial concurrent tasks,
   started by ``asyncio.gather`` over ``create_task``, by an ``anyio`` task
   group, and by ``asyncio.TaskGroup``. Each run is a fresh subprocess of this
   script; its peak is ``VmHWM`` from ``/proc/self/status``, not
   ``ru_maxrss``, because Linux carries the parent's peak into the child.

Each section prints a markdown table: the median over ``--reps`` repetitions,
and the median of the per-repetition ratio to the section's first row (a
paired ratio, steadier than a ratio of medians when the disk is noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

FILES_PER_BATCH = 64
PAYLOAD = os.urandom(200)
RSS_MODES = ("gather", "anyio_tg", "taskgroup")


def table(
    title: str, unit: str, results: dict[str, list[float]], notes: Sequence[str] = ()
) -> None:
    """Median per row and the paired ratio to the first row, as a markdown table."""
    print(f"\n### {title}\n")
    print(f"| variant | median {unit} | ratio | min / max |")
    print("|---|---:|---:|---:|")
    base = next(iter(results.values()))
    for name, values in results.items():
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        print(
            f"| {name} | {statistics.median(values):.1f} | {ratio:.2f} "
            f"| {min(values):.1f} / {max(values):.1f} |"
        )
    for note in notes:
        print(f"\n{note}")


# --- 1. thread hop ---------------------------------------------------------------------------


def noop() -> None:
    return None


async def time_hops(call: Callable[[], Any], n: int) -> float:
    """Microseconds per awaited hop, after a warm-up that starts the worker thread."""
    for _ in range(200):
        await call()
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n * 1e6


async def hop_anyio(n: int) -> float:
    return await time_hops(lambda: anyio.to_thread.run_sync(noop), n)


async def hop_executor(n: int) -> float:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as pool:
        return await time_hops(lambda: loop.run_in_executor(pool, noop), n)


async def hop_simplequeue(n: int) -> float:
    """A persistent worker: no pool bookkeeping, one queue put and one loop wake-up per hop."""
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
    jobs = queue.SimpleQueue()

    def settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is None:
            fut.set_result(result)
        else:
            fut.set_exception(error)

    def worker() -> None:
        while (job := jobs.get()) is not None:
            fn, fut = job
            try:
                loop.call_soon_threadsafe(settle, fut, fn(), None)
            except BaseException as exc:
                loop.call_soon_threadsafe(settle, fut, None, exc)

    async def call() -> Any:
        fut = loop.create_future()
        jobs.put((noop, fut))
        return await fut

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        return await time_hops(call, n)
    finally:
        jobs.put(None)
        thread.join()


async def run_hop(n: int, reps: int) -> dict[str, list[float]]:
    variants = {
        "`anyio.to_thread.run_sync`": hop_anyio,
        "`run_in_executor` (1-thread pool)": hop_executor,
        "`SimpleQueue` thread + `call_soon_threadsafe`": hop_simplequeue,
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            results[name].append(await fn(n))
    return results


def section_hop(n: int, reps: int) -> None:
    results = asyncio.run(run_hop(n, reps))
    table(f"Thread hop, idle loop ({n} hops x {reps} reps)", "µs/hop", results)
    steps = max(n // 20, 100)
    results = asyncio.run(run_overlap(steps, reps))
    table(
        f"1 ms steps, each handing a {OVERLAP_JOB * 1e6:.0f} µs job to a thread"
        f" ({steps} steps x {reps} reps)",
        "µs/step",
        results,
        notes=[
            "The job overlaps the next step in every variant and is always shorter than the"
            " step; what differs is whether its completion wakes the event loop while the"
            " loop sleeps. asyncflow's `StorageFile` writer thread is the last variant."
        ],
    )


#: the thread's job in the overlap floor: a blocking call shorter than the 1 ms step
OVERLAP_JOB = 0.0006


async def overlap_none(steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        await asyncio.sleep(0.001)
    return (time.perf_counter() - start) / steps * 1e6


async def overlap_executor(steps: int) -> float:
    """A job per step through ``run_in_executor``: its completion wakes the loop."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as pool:
        start = time.perf_counter()
        pending: asyncio.Future[None] | None = None
        for _ in range(steps):
            await asyncio.sleep(0.001)
            if pending is not None:
                await pending
            pending = loop.run_in_executor(pool, time.sleep, OVERLAP_JOB)
        assert pending is not None
        await pending
        return (time.perf_counter() - start) / steps * 1e6


async def overlap_anyio_task(steps: int) -> float:
    """A job per step in a background task through ``anyio.to_thread``: as asyncflow did."""
    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        done: anyio.Event | None = None

        async def job(event: anyio.Event) -> None:
            await anyio.to_thread.run_sync(time.sleep, OVERLAP_JOB)
            event.set()

        for _ in range(steps):
            await asyncio.sleep(0.001)
            if done is not None:
                await done.wait()
            done = anyio.Event()
            group.start_soon(job, done)
    return (time.perf_counter() - start) / steps * 1e6


async def overlap_silent(steps: int) -> float:
    """A long-lived thread that marks each job done and wakes the loop only if it waits."""
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    lock = threading.Lock()
    state: dict[str, Any] = {"done": -1, "waiter": None}

    def worker() -> None:
        while (job := jobs.get()) is not None:
            time.sleep(OVERLAP_JOB)
            with lock:
                state["done"] = job
                waiter, state["waiter"] = state["waiter"], None
            if waiter is not None:
                loop.call_soon_threadsafe(waiter.set_result, None)

    async def until_done(job: int) -> None:
        with lock:
            if state["done"] >= job:
                return
            waiter = state["waiter"] = loop.create_future()
        await waiter

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        start = time.perf_counter()
        for i in range(steps):
            await asyncio.sleep(0.001)
            if i:
                await until_done(i - 1)
            jobs.put(i)
        await until_done(steps - 1)
        return (time.perf_counter() - start) / steps * 1e6
    finally:
        jobs.put(None)
        thread.join()


async def run_overlap(steps: int, reps: int) -> dict[str, list[float]]:
    variants = {
        "1 ms `asyncio.sleep` steps, no job": overlap_none,
        "+ job via `run_in_executor`, awaited at the next step": overlap_executor,
        "+ job via `anyio.to_thread` in a background task": overlap_anyio_task,
        "+ job via a queue to a long-lived thread, no wake-up unless waited": overlap_silent,
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            results[name].append(await fn(steps))
    return results


# --- 2. durable small files ------------------------------------------------------------------


def load_syncfs() -> Callable[[int], int] | None:
    """``syncfs(2)`` from libc, or None where there is none (not Linux, or no glibc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def write_tmp(d: Path, i: int, sync: bool) -> Path:
    tmp = d / f".f{i}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, PAYLOAD)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def one_durable(d: Path, dfd: int, i: int) -> None:
    """The textbook durable write: temp file, fsync, replace, fsync the directory."""
    os.replace(write_tmp(d, i, sync=True), d / f"f{i}")
    os.fsync(dfd)


def open_all(d: Path) -> list[tuple[Path, int]]:
    """Write every temp file of the batch, leaving each open for a later fsync."""
    opened = []
    for i in range(FILES_PER_BATCH):
        tmp = d / f".f{i}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, PAYLOAD)
        opened.append((tmp, fd))
    return opened


def publish(d: Path, dfd: int, tmps: Sequence[Path]) -> None:
    """Rename the synced temp files into place; one directory fsync covers them all."""
    for i, tmp in enumerate(tmps):
        os.replace(tmp, d / f"f{i}")
    os.fsync(dfd)


def fsync_close(fd: int) -> None:
    os.fsync(fd)
    os.close(fd)


def make_fsync_variants(
    pool64: ThreadPoolExecutor, pool8: ThreadPoolExecutor, syncfs: Callable[[int], int] | None
) -> dict[str, Callable[[Path, int], None]]:
    def sequential(d: Path, dfd: int) -> None:
        for i in range(FILES_PER_BATCH):
            one_durable(d, dfd, i)

    def threads64(d: Path, dfd: int) -> None:
        list(pool64.map(lambda i: one_durable(d, dfd, i), range(FILES_PER_BATCH)))

    def group_syncfs(d: Path, dfd: int) -> None:
        assert syncfs is not None
        tmps = [write_tmp(d, i, sync=False) for i in range(FILES_PER_BATCH)]
        if syncfs(dfd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
        publish(d, dfd, tmps)

    def group_fsync_each(d: Path, dfd: int) -> None:
        opened = open_all(d)
        for _, fd in opened:
            fsync_close(fd)
        publish(d, dfd, [tmp for tmp, _ in opened])

    def group_fsync_8threads(d: Path, dfd: int) -> None:
        opened = open_all(d)
        list(pool8.map(fsync_close, [fd for _, fd in opened]))
        publish(d, dfd, [tmp for tmp, _ in opened])

    variants: dict[str, Callable[[Path, int], None]] = {
        "sequential: write, fsync, replace, fsync dir": sequential,
        "64 threads, each the sequential write": threads64,
        "group commit: one `syncfs`": group_syncfs,
        "group commit: fsync each, 1 thread": group_fsync_each,
        "group commit: fsync each, 8 threads": group_fsync_8threads,
    }
    if syncfs is None:
        del variants["group commit: one `syncfs`"]
    return variants


def fsync_run(
    root: Path, variants: dict[str, Callable[[Path, int], None]], batches: int, run: int
) -> dict[str, float]:
    """One run: the median µs/file per variant over its batches, batch 0 being warm-up."""
    per_batch: dict[str, list[float]] = {name: [] for name in variants}
    for batch in range(batches + 1):
        for k, (name, fn) in enumerate(variants.items()):
            d = root / f"r{run}-b{batch}-v{k}"
            d.mkdir()
            dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.sync()  # start every batch from a clean journal
                start = time.perf_counter()
                fn(d, dfd)
                elapsed = time.perf_counter() - start
            finally:
                os.close(dfd)
            if batch > 0:
                per_batch[name].append(elapsed / FILES_PER_BATCH * 1e6)
    return {name: statistics.median(values) for name, values in per_batch.items()}


def section_fsync(base: Path | None, batches: int, reps: int) -> None:
    syncfs = load_syncfs()
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="floors-fsync-", dir=base if base is not None else "."))
    try:
        with ThreadPoolExecutor(64) as pool64, ThreadPoolExecutor(8) as pool8:
            variants = make_fsync_variants(pool64, pool8, syncfs)
            results: dict[str, list[float]] = {name: [] for name in variants}
            for run in range(reps):
                for name, value in fsync_run(root, variants, batches, run).items():
                    results[name].append(value)
    finally:
        shutil.rmtree(root)
    notes = [f"Directory: `{root.parent.resolve()}`, {len(PAYLOAD)}-byte files."]
    if syncfs is None:
        notes.append("`syncfs` skipped: not available on this platform.")
    table(
        f"Durable small files, {FILES_PER_BATCH} per batch "
        f"({batches} + 1 warm-up batches x {reps} runs; median of run medians)",
        "µs/file",
        results,
        notes,
    )


# --- 3. peak RSS per task --------------------------------------------------------------------


def vm_hwm() -> int:
    """This process's peak resident set in bytes, reset by exec unlike ``ru_maxrss``."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def trivial(i: int) -> int:
    await asyncio.sleep(0)
    return i


async def trivial_into(i: int, out: list[int]) -> None:
    await asyncio.sleep(0)
    out.append(i)


async def spawn(mode: str, n: int) -> None:
    if mode == "gather":
        results = await asyncio.gather(*[asyncio.create_task(trivial(i)) for i in range(n)])
        assert len(results) == n
    elif mode == "anyio_tg":
        out: list[int] = []
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(trivial_into, i, out)
        assert len(out) == n
    elif mode == "taskgroup":
        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            tasks = [group.create_task(trivial(i)) for i in range(n)]
        assert len(tasks) == n
    else:
        raise ValueError(mode)


def child(mode: str, n: int) -> None:
    """Runs in the fresh subprocess: prints the peak growth per task in bytes."""
    gc.collect()
    before = vm_hwm()
    asyncio.run(spawn(mode, n))
    print((vm_hwm() - before) / n)


def section_rss(n: int, reps: int) -> None:
    if not Path("/proc/self/status").exists():
        print("\n### Peak RSS per task\n\nSkipped: needs /proc/self/status (Linux).")
        return
    labels = {
        "gather": "`asyncio.gather` over `create_task`",
        "anyio_tg": "`anyio` task group",
        "taskgroup": "`asyncio.TaskGroup`",
    }
    modes = [m for m in RSS_MODES if m != "taskgroup" or sys.version_info >= (3, 11)]
    results: dict[str, list[float]] = {labels[m]: [] for m in modes}
    for _ in range(reps):
        for mode in modes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(n)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[labels[mode]].append(float(out))
    notes = [] if "taskgroup" in modes else ["`asyncio.TaskGroup` skipped: needs Python 3.11."]
    table(
        f"Peak RSS per task ({n} concurrent tasks, fresh subprocess x {reps} reps)",
        "bytes/task",
        results,
        notes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=("hop", "fsync", "rss"))
    parser.add_argument("--dir", type=Path, help="fsync test: temp dir made here (default: .)")
    parser.add_argument("--reps", type=int, help="repetitions (default: hop 5, fsync 8, rss 5)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke check")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    sections = args.only or ["hop", "fsync", "rss"]
    hops, batches, tasks = (300, 1, 10_000) if args.quick else (10_000, 10, 100_000)

    def reps(default: int) -> int:
        return args.reps or (2 if args.quick else default)

    print(
        f"Python {platform.python_version()}, anyio {version('anyio')}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    )
    if "hop" in sections:
        section_hop(hops, reps(5))
    if "fsync" in sections:
        section_fsync(args.dir, batches, reps(8))
    if "rss" in sections:
        section_rss(tasks, reps(5))


if __name__ == "__main__":
    main()
