"""asyncflow against its floor and against Dotflow 1.0.1, in one run, as one table.

    python benchmarks/run.py                     # everything (several minutes)
    python benchmarks/run.py --smoke             # tiny N, a few seconds; asserts no timing
    python benchmarks/run.py --only overhead --only resume --n 100,1000

Sections (``--only`` names):

* ``overhead``: a sequential chain of trivial async steps on ``StorageDefault``
  vs a raw asyncio loop awaiting the same coroutines vs Dotflow on its
  ``StorageDefault``.
* ``file``: a durable ``StorageFile`` step vs the raw ``write tmp + fsync +
  os.replace + fsync dir`` loop (the physical floor) vs Dotflow's
  ``StorageFile`` (which does not fsync); then the durability modes: a
  chain of steps that each await 1 ms of I/O (memory vs ``async``/``sync``/
  ``batch`` on files vs their floors, before and after the writer thread,
  paired ratios), and ``sync``/``batch`` in parallel.
* ``resume``: N completed steps, all skipped, in a fresh process: asyncflow vs
  Dotflow on files; on S3 (SeaweedFS) and GCS (fake-gcs-server) vs N
  sequential GETs (only when those servers can be started).
* ``parallel``: parallel mode, N trivial in-memory tasks, ``max_concurrency``
  unbounded and 64: wall time and peak RSS per task, each configuration in its
  own process so that peaks do not mix.
* ``payload``: 100 B / 10 KB / 1 MB outputs on files, S3 and GCS vs the raw
  write of the record's bytes; on object stores both the steady-state step
  (step start to next step start) and the whole run divided by N.
* ``distinct``: N distinct step functions vs one repeated function, fresh
  durable run and resume (``benchmarks/distinct_steps.py``).
* ``peers``: asyncflow, LangGraph and DBOS side by side, each in its own
  virtualenv (``benchmarks/peers.py``; its report is printed after the table).

Every figure is the median of ``--reps`` repetitions, the implementations
interleaved within each repetition so that a noisy neighbour hurts all alike,
and is reported as µs per step and as a ratio to the baseline of its row
group measured in the same run.

Dotflow runs in this process when ``import dotflow`` works, else through
``--dotflow-python`` (default ``/work/dfvenv/bin/python`` when it exists);
otherwise its rows are skipped with a note. The table says which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from asyncflow import AsyncFlow, Config, action  # noqa: E402
from asyncflow.providers import StorageDefault, StorageFile  # noqa: E402

HAS_DURABILITY = "durability" in getattr(Config, "__dataclass_fields__", {})
SECTIONS = ("overhead", "file", "resume", "parallel", "payload", "distinct", "peers")
DEFAULT_DOTFLOW_PYTHON = "/work/dfvenv/bin/python"


# -- results -------------------------------------------------------------------


@dataclass
class Row:
    section: str
    case: str
    n: int
    impl: str
    us: float | None
    ratio: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def group(
        self, section: str, case: str, n: int, figures: list[tuple[str, float | None, str]]
    ) -> None:
        """Add rows whose ratio is to the first figure (the baseline)."""
        base = figures[0][1]
        for impl, us, note in figures:
            ratio = us / base if us is not None and base else None
            self.rows.append(Row(section, case, n, impl, us, ratio, note))
            shown = f"{us:10.2f} µs" if us is not None else "   skipped"
            print(f"  {section:<9}{case:<28}{n:>7}  {impl:<34}{shown}", file=sys.stderr)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", file=sys.stderr)

    def render(self) -> str:
        lines = [
            "| section | case | N | implementation | µs/step | ratio | note |",
            "|---|---|---:|---|---:|---:|---|",
        ]
        for r in self.rows:
            us = "—" if r.us is None else (f"{r.us:.2f}" if r.us < 100 else f"{r.us:.0f}")
            ratio = "—" if r.ratio is None else f"{r.ratio:.2f}x"
            lines.append(
                f"| {r.section} | {r.case} | {r.n} | {r.impl} | {us} | {ratio} | {r.note} |"
            )
        if self.notes:
            lines.append("")
            lines.extend(f"* {note}" for note in self.notes)
        return "\n".join(lines)


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- Dotflow -------------------------------------------------------------------


class Dotflow:
    """Calls ``_dotflow_side`` in this process or through another interpreter."""

    def __init__(self, python: str | None) -> None:
        self.python: str | None = None
        self.module: Any = None
        if importlib.util.find_spec("dotflow") is not None:
            import _dotflow_side

            self.module = _dotflow_side
            self.python = sys.executable
            self.where = "in-process"
        elif python and Path(python).exists():
            self.python = python
            self.where = f"subprocess ({python})"
        else:
            self.where = "unavailable"

    @property
    def available(self) -> bool:
        return self.python is not None

    def call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        if self.module is not None:
            result: dict[str, Any] = getattr(self.module, op)(**kwargs)
            return result
        return self.subprocess(op, **kwargs)

    def subprocess(self, op: str, **kwargs: Any) -> dict[str, Any]:
        """Always a fresh process (resume must not find anything warm)."""
        assert self.python is not None
        out = subprocess.run(
            [self.python, str(HERE / "_dotflow_side.py"), json.dumps({"op": op, **kwargs})],
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


# -- steps -----------------------------------------------------------------------


async def _trivial(previous_context: Any = None) -> int:
    return 1


trivial = action(_trivial)


def payload_step(size: int) -> Any:
    value = "x" * size

    @action
    async def emit(previous_context: Any) -> str:
        return value

    return emit


def chain(storage: Any, n: int, step: Any = trivial, **config: Any) -> AsyncFlow:
    flow = AsyncFlow(
        config=Config(storage=storage, **config), workflow_id=f"bench-{os.urandom(4).hex()}"
    )
    for _ in range(n):
        flow.task.add(step)
    return flow


async def timed(flow: AsyncFlow, n: int, **start: Any) -> float:
    gc.collect()
    clock = time.perf_counter()
    await flow.start(**start)
    seconds = time.perf_counter() - clock
    failed = [t for t in flow.task.queue if t.status.value != "Completed"]
    assert not failed, failed[:3]
    return seconds / n * 1e6


# -- 1. engine overhead --------------------------------------------------------


async def raw_chain(n: int) -> float:
    """The floor: await the same coroutine function n times, passing the value on."""
    func = _trivial
    gc.collect()
    clock = time.perf_counter()
    value: Any = None
    for _ in range(n):
        value = await func(value)
    return (time.perf_counter() - clock) / n * 1e6


async def record_chain(n: int) -> float:
    """What a checkpoint costs with no engine around it: the floor of any checkpointing loop.

    The same awaits, plus the work every record needs: strict encoding of
    the output, its digest, the record's bytes, and a store into a dict.
    """
    from asyncflow._kernel.checkpoint import RecordEncoder, encode_output
    from asyncflow.serializers import JSONSerializer

    func = _trivial
    serializer = JSONSerializer()
    encoder = RecordEncoder("bench", serializer.name, None)
    store: dict[str, bytes] = {}
    gc.collect()
    clock = time.perf_counter()
    value: Any = None
    digest: str | None = None
    for i in range(n):
        started = time.time()
        value = await func(value)
        encoded = encode_output(serializer, value, "trivial")
        key = str(i)
        store[f"bench/tasks/{key}.json"] = encoder.encode(
            key=key,
            task_id=i,
            step="trivial",
            module=__name__,
            attempts=1,
            started_at=started,
            finished_at=time.time(),
            input_digest=digest,
            code_hash="0",
            output=encoded,
        )
        digest = encoded.digest
    return (time.perf_counter() - clock) / n * 1e6


async def bench_overhead(args: argparse.Namespace, table: Table, dotflow: Dotflow) -> None:
    for n in args.n:
        raw, records, ours, theirs = [], [], [], []
        for _ in range(args.reps):
            raw.append(await raw_chain(n))
            records.append(await record_chain(n))
            ours.append(await timed(chain(StorageDefault(), n), n))
            if dotflow.available:
                theirs.append(dotflow.call("overhead", n=n, reps=1)["us"])
        table.group(
            "overhead",
            "sequential, in memory",
            n,
            [
                ("raw asyncio await (floor)", median(raw), ""),
                (
                    "the same awaits + making each record (record floor)",
                    median(records),
                    "encode, digest, record bytes, dict store; no engine",
                ),
                ("asyncflow StorageDefault", median(ours), ""),
                (
                    "Dotflow 1.0.1 StorageDefault",
                    median(theirs) if theirs else None,
                    f"sync steps; {dotflow.where}",
                ),
            ],
        )


# -- 2. durable file checkpoint --------------------------------------------------


RECORD_SIZE = 420  # about what asyncflow writes for a trivial step


def raw_durable_write(root: Path, i: int, data: bytes) -> None:
    target = root / f"{i}.json"
    tmp = root / f".{i}.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dfd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def raw_durable_loop(root: Path, n: int, data: bytes) -> float:
    """The physical floor: write tmp + fsync + os.replace + fsync dir, n times."""
    root.mkdir(parents=True, exist_ok=True)
    gc.collect()
    clock = time.perf_counter()
    for i in range(n):
        raw_durable_write(root, i, data)
    return (time.perf_counter() - clock) / n * 1e6


async def raw_durable_hops(root: Path, n: int, data: bytes) -> float:
    """The floor for any event-loop program: the same write, one worker-thread hop each.

    An async library cannot fsync on the loop thread without freezing every
    other task, so the hop's wake-up latency is part of its physical cost.
    """
    root.mkdir(parents=True, exist_ok=True)
    gc.collect()
    clock = time.perf_counter()
    for i in range(n):
        await anyio.to_thread.run_sync(raw_durable_write, root, i, data)
    return (time.perf_counter() - clock) / n * 1e6


class StorageFileHops(StorageFile):
    """``StorageFile`` as before the writer thread: one anyio thread hop per record.

    Kept so that every run measures before and after side by side.
    """

    def background_writer(self) -> None:
        return None


async def _io_step(previous_context: Any = None) -> int:
    await anyio.sleep(0.001)
    return 1


io_step = action(_io_step)


async def raw_overlap_loop(root: Path, n: int, data: bytes) -> float:
    """The floor of ``async``: 1 ms awaits, each record written by a long-lived thread.

    One write in flight at a time (the next waits for the previous), and the
    thread wakes the loop only when the loop waits for it: what any design
    keeping the one-write-in-flight guarantee can reach on this disk.
    """
    root.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    lock = threading.Lock()
    state: dict[str, Any] = {"done": -1, "waiter": None}

    def worker() -> None:
        while (job := jobs.get()) is not None:
            raw_durable_write(root, job, data)
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
        gc.collect()
        clock = time.perf_counter()
        for i in range(n):
            await anyio.sleep(0.001)
            if i:
                await until_done(i - 1)
            jobs.put(i)
        await until_done(n - 1)
        return (time.perf_counter() - clock) / n * 1e6
    finally:
        jobs.put(None)
        thread.join()


async def interleaved(
    args: argparse.Namespace,
    tmp: Path,
    tag: str,
    runs: dict[str, Callable[[Path], Awaitable[float]]],
) -> dict[str, list[float]]:
    """Each implementation once per repetition, in an order that rotates between repetitions."""
    got: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(args.reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            base = tmp / f"{tag}-{rep}-{name.replace(' ', '-')}"
            got[name].append(await runs[name](base))
            shutil.rmtree(base, ignore_errors=True)
    return got


def paired(got: dict[str, list[float]], name: str, base: list[float]) -> float:
    """The median of the per-repetition ratios: steadier than a ratio of medians."""
    return median([a / b for a, b in zip(got[name], base, strict=True)])


Runs = dict[str, Callable[[Path], Awaitable[float]]]


def durable_step_runs(n: int, data: bytes) -> Runs:
    runs: Runs = {
        "raw": lambda base: _sync(raw_durable_loop, base, n, data),
        "hops": lambda base: raw_durable_hops(base, n, data),
        "sync": lambda base: timed(chain(StorageFile(base), n), n),
        "sync before": lambda base: timed(chain(StorageFileHops(base), n), n),
    }
    if HAS_DURABILITY:
        runs["async"] = lambda base: timed(chain(StorageFile(base), n, durability="async"), n)
    return runs


async def bench_file(args: argparse.Namespace, table: Table, dotflow: Dotflow, tmp: Path) -> None:
    data = b"x" * RECORD_SIZE
    raw: list[float] = []
    for n in args.file_n:
        runs = durable_step_runs(n, data)
        got = await interleaved(args, tmp, f"file-{n}", runs)
        theirs = []
        if dotflow.available:
            for rep in range(args.reps):
                root = tmp / f"file-{n}-{rep}-dotflow"
                theirs.append(dotflow.call("file_chain", n=n, reps=1, root=str(root))["us"])
                shutil.rmtree(root, ignore_errors=True)
        raw = got["raw"]
        hops = got["hops"]
        table.group(
            "file",
            "sequential, durable step",
            n,
            [
                ("raw tmp+fsync+replace+fsync dir (floor)", median(raw), ""),
                (
                    "the same raw write, one thread hop each (async floor)",
                    median(hops),
                    f"asyncflow sync = {paired(got, 'sync', hops):.2f}x this (target ≤ 1.2x)",
                ),
                ("asyncflow StorageFile sync", median(got["sync"]), "writer thread"),
                (
                    "asyncflow StorageFile sync, a hop per write (before)",
                    median(got["sync before"]),
                    f"= {paired(got, 'sync before', hops):.2f}x the hop floor",
                ),
                (
                    "asyncflow StorageFile async",
                    median(got["async"]) if "async" in got else None,
                    "next step overlaps the write",
                ),
                (
                    "Dotflow 1.0.1 StorageFile",
                    median(theirs) if theirs else None,
                    f"**no fsync**: not durable; {dotflow.where}",
                ),
            ],
        )
    if not HAS_DURABILITY:
        table.note("Config(durability=...) is not available in this asyncflow: modes skipped")
        return
    for n in args.io_n:
        await bench_io_chain(args, table, tmp, n, data)
    for n in args.file_n:
        sync_runs, batch_runs = [], []
        for rep in range(args.reps):
            base = tmp / f"par-{n}-{rep}"
            flow = chain(StorageFile(base / "sync"), n)
            sync_runs.append(await timed(flow, n, mode="parallel", max_concurrency=64))
            flow = chain(StorageFile(base / "batch"), n, durability="batch")
            batch_runs.append(await timed(flow, n, mode="parallel", max_concurrency=64))
            shutil.rmtree(base, ignore_errors=True)
        table.group(
            "file",
            "parallel x64, durable task",
            n,
            [
                ("raw durable write (floor, 1 at a time)", median(raw), "from the row above"),
                ("asyncflow parallel sync", median(sync_runs), "writer thread: group commits"),
                ("asyncflow parallel batch", median(batch_runs), "group commit: shared fsyncs"),
            ],
        )


async def bench_io_chain(
    args: argparse.Namespace, table: Table, tmp: Path, n: int, data: bytes
) -> None:
    """A chain of steps that each await 1 ms of I/O: what durability costs next to real work.

    Every implementation runs once per repetition, in a rotating order, and
    each ratio is taken within its repetition (paired), then the median.
    """
    runs: Runs = {
        "memory": lambda base: timed(chain(StorageDefault(), n, io_step), n),
        "raw": lambda base: _sync(raw_durable_loop, base, n, data),
        "hops": lambda base: raw_durable_hops(base, n, data),
        "overlap": lambda base: raw_overlap_loop(base, n, data),
    }
    for durability in ("async", "sync", "batch"):
        for label, kind in (("", StorageFile), (" before", StorageFileHops)):

            def run(base: Path, kind: Any = kind, durability: str = durability) -> Awaitable[float]:
                return timed(chain(kind(base), n, io_step, durability=durability), n)

            runs[durability + label] = run
    for label, kind in (("", StorageFile), (" before", StorageFileHops)):

        def nofsync(base: Path, kind: Any = kind) -> Awaitable[float]:
            return timed(chain(kind(base, durable=False), n, io_step, durability="async"), n)

        runs["no fsync" + label] = nofsync
    got = await interleaved(args, tmp, f"io-{n}", runs)
    got["sync floor"] = [m + h for m, h in zip(got["memory"], got["hops"], strict=True)]
    sync_floor = got["sync floor"]
    mem = got["memory"]

    def ratio(name: str, base: list[float]) -> float:
        return paired(got, name, base)

    table.group(
        "file",
        "chain of 1 ms I/O steps",
        n,
        [
            ("asyncflow StorageDefault (memory)", median(mem), "the same chain, no disk"),
            (
                "memory + raw durable write through one hop (sync floor)",
                median(sync_floor),
                f"hop write alone {median(got['hops']):.0f} µs;"
                f" raw write alone {median(got['raw']):.0f} µs",
            ),
            (
                "raw loop: 1 ms await, raw write on a silent thread, 1 in flight (async floor)",
                median(got["overlap"]),
                f"= {ratio('overlap', mem):.2f}x memory",
            ),
            (
                "asyncflow StorageFile async",
                median(got["async"]),
                f"= {ratio('async', mem):.2f}x memory (target ≤ 1.15x);"
                f" {ratio('async', got['overlap']):.2f}x its floor",
            ),
            (
                "asyncflow StorageFile async, a hop per write (before)",
                median(got["async before"]),
                f"= {ratio('async before', mem):.2f}x memory;"
                f" {ratio('async before', got['overlap']):.2f}x the floor",
            ),
            (
                "asyncflow StorageFile sync",
                median(got["sync"]),
                f"= {ratio('sync', sync_floor):.2f}x the sync floor (target ≤ 1.15x)",
            ),
            (
                "asyncflow StorageFile sync, a hop per write (before)",
                median(got["sync before"]),
                f"= {ratio('sync before', sync_floor):.2f}x the sync floor",
            ),
            (
                "asyncflow StorageFile batch",
                median(got["batch"]),
                f"= {ratio('batch', got['async']):.2f}x async (target ≤ 1.0x);"
                f" {ratio('batch', got['sync']):.2f}x sync",
            ),
            (
                "asyncflow StorageFile batch, a hop per write (before)",
                median(got["batch before"]),
                f"= {ratio('batch before', got['async before']):.2f}x async before",
            ),
            (
                "asyncflow StorageFile(durable=False) async",
                median(got["no fsync"]),
                f"= {ratio('no fsync', mem):.2f}x memory: a write shorter than the step",
            ),
            (
                "asyncflow StorageFile(durable=False) async, a hop per write (before)",
                median(got["no fsync before"]),
                f"= {ratio('no fsync before', mem):.2f}x memory",
            ),
        ],
    )


async def _sync(func: Callable[..., float], *args: Any) -> float:
    return func(*args)


# -- 3. resume in a fresh process ------------------------------------------------


def _child(args: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(args)],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {args['op']} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _storage_from(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "file":
        return StorageFile(spec["root"])
    if spec["kind"] == "s3":
        from asyncflow.providers.s3 import StorageS3

        return StorageS3(spec["bucket"], spec["prefix"], **spec["client"])
    if spec["kind"] == "gcs":
        from asyncflow.providers.gcs import StorageGCS

        return StorageGCS(spec["bucket"], spec["prefix"], api_root=spec["url"])
    return StorageDefault()


CALLS: list[int] = []


@action
async def never(previous_context: Any) -> int:
    """The step of the resume benchmark: it must never run in the timed resume."""
    CALLS.append(1)
    return 1


def _storage_for_prepare(spec: dict[str, Any]) -> Any:
    # Same bytes as a durable write, without paying N fsyncs just to set up.
    if spec["kind"] == "file":
        return StorageFile(spec["root"], durable=False)
    return _storage_from(spec)


def _count_requests(storage: Any) -> dict[str, int]:
    """Count what ``storage`` is asked, on the instance: object GETs (a ``read``, or a key
    of ``read_many``) and listings (``list``, ``list_versions``; a listing of 1,000 keys
    or more is one request per 1,000 on S3 and GCS)."""
    counts = {"gets": 0, "listings": 0}
    read, read_many = storage.read, getattr(storage, "read_many", None)
    listing, versions = storage.list, getattr(storage, "list_versions", None)

    async def counted_read(key: str) -> Any:
        counts["gets"] += 1
        return await read(key)

    async def counted_read_many(keys: list[str]) -> Any:
        counts["gets"] += len(keys)
        return await read_many(keys)

    def counted_list(prefix: str) -> Any:
        counts["listings"] += 1
        return listing(prefix)

    def counted_versions(prefix: str) -> Any:
        counts["listings"] += 1
        return versions(prefix)

    storage.read = counted_read
    storage.list = counted_list
    if read_many is not None:
        storage.read_many = counted_read_many
    if versions is not None:
        storage.list_versions = counted_versions
    return counts


async def child_resume(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: build the flow, time ``start(resume=True)``.

    ``spec["packs"] = False``: as before packs, the storage's ``list_versions``
    hidden (a resume then lists ``tasks/`` and reads every record).
    """
    n = spec["n"]
    storage = _storage_from(spec)
    packs = spec.get("packs", True)
    if not packs:
        storage.list_versions = None  # the capability probe then finds none
    counts = _count_requests(storage)
    try:
        flow = AsyncFlow(
            config=Config(storage=storage, pack_min_records=64 if packs else None),
            workflow_id=spec["workflow_id"],
        )
        for i in range(n):
            flow.task.add(never, key=f"k{i}")
        clock = time.perf_counter()
        await flow.start(resume=True)
        seconds = time.perf_counter() - clock
    finally:
        await storage.aclose()
    return {"us": seconds / n * 1e6, "reran": len(CALLS), **counts}


async def child_read_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: open, read and ``json.loads`` the same N record files, nothing else.

    The raw floor of a resume from files: what any implementation pays to get
    the records into memory, without leases, run files, checks or restoring.
    """
    root = Path(spec["root"]) / spec["workflow_id"] / "tasks"
    paths = [str(root / f"k{i}.json") for i in range(spec["n"])]
    clock = time.perf_counter()
    parsed = []
    for path in paths:
        with open(path, "rb") as handle:
            parsed.append(json.loads(handle.read()))
    seconds = time.perf_counter() - clock
    assert len(parsed) == spec["n"]
    return {"us": seconds / spec["n"] * 1e6}


async def prepare_resume(spec: dict[str, Any]) -> None:
    """Write the checkpoints of n completed steps of one sequential chain."""
    storage = _storage_for_prepare(spec)
    try:
        flow = AsyncFlow(config=Config(storage=storage), workflow_id=spec["workflow_id"])
        for i in range(spec["n"]):
            flow.task.add(never, key=f"k{i}")
        await flow.start()
    finally:
        await storage.aclose()
    CALLS.clear()


async def sequential_gets(spec: dict[str, Any]) -> float:
    """The object-store floor: N GETs one after another, in a warm client."""
    storage = _storage_from(spec)
    try:
        keys = [f"{spec['workflow_id']}/tasks/k{i}.json" for i in range(spec["n"])]
        await storage.read(keys[0])
        clock = time.perf_counter()
        for key in keys:
            assert await storage.read(key) is not None
        return (time.perf_counter() - clock) / len(keys) * 1e6
    finally:
        await storage.aclose()


async def concurrent_gets(spec: dict[str, Any], in_flight: int = 32) -> float:
    """The floor of a concurrent resume: the same N GETs, ``in_flight`` at a time, warm client.

    No listing, no decoding, no engine: what the server gives one client
    with that many reads in flight.
    """
    storage = _storage_from(spec)
    try:
        keys = iter([f"{spec['workflow_id']}/tasks/k{i}.json" for i in range(spec["n"])])
        await storage.read(f"{spec['workflow_id']}/tasks/k0.json")

        async def worker() -> None:
            for key in keys:
                assert await storage.read(key) is not None

        clock = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(in_flight):
                group.start_soon(worker)
        return (time.perf_counter() - clock) / spec["n"] * 1e6
    finally:
        await storage.aclose()


async def bench_resume(
    args: argparse.Namespace, table: Table, dotflow: Dotflow, tmp: Path, servers: Servers
) -> None:
    for n in args.n:
        ours, theirs = [], []
        spec = {
            "kind": "file",
            "root": str(tmp / f"resume-af-{n}"),
            "workflow_id": "resume",
            "n": n,
        }
        await prepare_resume(spec)
        droot = str(tmp / f"resume-dotflow-{n}")
        if dotflow.available:
            dotflow.subprocess("prepare_resume", n=n, root=droot)
        floor: list[float] = []
        unpacked: list[float] = []
        for _ in range(args.reps):
            floor.append(_child({"op": "read_floor", **spec})["us"])
            before = _child({"op": "resume", **spec, "packs": False})
            assert before["reran"] == 0, before
            unpacked.append(before["us"])
            result = _child({"op": "resume", **spec})
            assert result["reran"] == 0, result
            ours.append(result["us"])
            if dotflow.available:
                got = dotflow.subprocess("resume", n=n, root=droot)
                assert got["reran"] == 0, got
                theirs.append(got["us"])
        ours_us = median(ours)
        figures: list[tuple[str, float | None, str]] = [
            (
                "Dotflow 1.0.1 StorageFile",
                median(theirs) if theirs else None,
                f"fresh process; {dotflow.where}",
            ),
            (
                "open + read + json.loads each file (floor)",
                median(floor),
                f"fresh process; asyncflow = {ours_us / median(floor):.2f}x this",
            ),
            (
                "asyncflow StorageFile, record by record",
                median(unpacked),
                f"fresh process; no pack (as before packs): {before['gets']} reads",
            ),
            (
                "asyncflow StorageFile",
                ours_us,
                f"fresh process; from the pack: {result['gets']} reads,"
                f" {result['listings']} listing(s)",
            ),
        ]
        if not theirs:
            figures = figures[1:]  # the floor is the baseline then
        table.group("resume", "skip N done steps, files", n, figures)
        shutil.rmtree(spec["root"], ignore_errors=True)
        shutil.rmtree(droot, ignore_errors=True)
    for kind in ("s3", "gcs"):
        base = servers.spec(kind)
        if base is None:
            continue
        for n in args.n:
            spec = {
                **base,
                "prefix": f"resume-{n}-{os.urandom(3).hex()}",
                "workflow_id": "r",
                "n": n,
            }
            await prepare_resume(spec)
            gets, floor, ours, unpacked = [], [], [], []
            try:
                for _ in range(args.reps):
                    gets.append(await sequential_gets(spec))
                    floor.append(await concurrent_gets(spec))
                    before = _child({"op": "resume", **spec, "packs": False})
                    assert before["reran"] == 0, before
                    unpacked.append(before["us"])
                    result = _child({"op": "resume", **spec})
                    assert result["reran"] == 0, result
                    ours.append(result["us"])
            except RuntimeError as exc:
                # An emulator on these two cores can stall long enough for a
                # run to lose its lease; say so in the table, keep the rest.
                last = str(exc).strip().splitlines()[-1]
                table.note(f"resume on {servers.name(kind)}, N = {n}: the run failed: {last}")
                continue
            table.group(
                "resume",
                f"skip N done steps, {servers.name(kind)}",
                n,
                [
                    ("N sequential GETs (floor x1)", median(gets), "warm client"),
                    (
                        "N GETs, 32 in flight (server's floor)",
                        median(floor),
                        "warm client; no listing, no decoding",
                    ),
                    (
                        "asyncflow resume, record by record",
                        median(unpacked),
                        f"fresh process; no pack (as before packs): {before['gets']} GETs,"
                        f" {before['listings']} listing(s)",
                    ),
                    (
                        "asyncflow resume",
                        median(ours),
                        f"fresh process; from the pack: {result['gets']} GETs,"
                        f" {result['listings']} listing(s);"
                        f" {median(unpacked) / median(ours):.1f}x faster than record by record",
                    ),
                ],
            )


# -- 4. parallel mode memory -------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _peak_kib() -> int:
    """This process's peak RSS (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the parent's peak into a child across
    fork and exec, so a child of a large benchmark process reported the
    parent's RSS as its own peak (10 KB per task at N = 10 000).
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


async def child_parallel(spec: dict[str, Any]) -> dict[str, Any]:
    n, limit = spec["n"], spec["max_concurrency"]
    gc.collect()
    imported = _rss_kib()
    flow = chain(StorageDefault(), n)
    gc.collect()
    built = _rss_kib()
    clock = time.perf_counter()
    await flow.start(mode="parallel", max_concurrency=limit)
    seconds = time.perf_counter() - clock
    peak = _peak_kib()
    assert all(t.status.value == "Completed" for t in flow.task.queue)
    return {
        "wall": seconds,
        "build_bytes_per_task": (built - imported) * 1024 / n,
        "run_bytes_per_task": max(0, peak - built) * 1024 / n,
    }


async def bench_parallel(args: argparse.Namespace, table: Table) -> None:
    if not sys.platform.startswith("linux"):
        table.note("parallel: RSS is read from /proc; skipped on this platform")
        return
    for n in args.mem_n:
        for limit in (None, 64):
            runs = [
                _child({"op": "parallel", "n": n, "max_concurrency": limit})
                for _ in range(max(1, min(args.reps, 3)))
            ]
            wall = median([r["wall"] for r in runs])
            run_b = median([r["run_bytes_per_task"] for r in runs])
            build_b = median([r["build_bytes_per_task"] for r in runs])
            row = Row(
                "parallel",
                f"max_concurrency={limit or 'unbounded'}",
                n,
                "asyncflow StorageDefault",
                wall / n * 1e6,
                None,
                f"wall {wall:.2f}s; peak RSS of the run {run_b:.0f} B/task"
                f" (+{build_b:.0f} B/task to build the flow)",
                {"wall": wall, "run_bytes_per_task": run_b, "build_bytes_per_task": build_b},
            )
            table.add(row)
            print(f"  parallel {n} {limit}: {row.note}", file=sys.stderr)


# -- 5. payload sweep ---------------------------------------------------------------


PAYLOADS = ((100, "100 B"), (10_000, "10 KB"), (1_000_000, "1 MB"))


async def raw_object_puts(storage: Any, n: int, data: bytes) -> float:
    await storage.write("raw/warm.json", data)
    clock = time.perf_counter()
    for i in range(n):
        await storage.write(f"raw/{i}.json", data)
    return (time.perf_counter() - clock) / n * 1e6


async def record_object_puts(storage: Any, n: int, size: int) -> float:
    """The record floor on an object store: make each record (encode, digest, bytes), PUT it.

    What any checkpoint of this output in asyncflow's record format costs
    with no engine: the encoding of a 1 MB string and its digest are CPU
    work the raw PUT of ready-made bytes does not do.
    """
    from asyncflow._kernel.checkpoint import RecordEncoder, encode_output
    from asyncflow.serializers import JSONSerializer

    value = "x" * size
    serializer = JSONSerializer()
    encoder = RecordEncoder("bench", serializer.name, None)
    gc.collect()
    clock = time.perf_counter()
    for i in range(n):
        started = time.time()
        encoded = encode_output(serializer, value, "emit")
        data = encoder.encode(
            key=f"k{i}",
            task_id=i,
            step="emit",
            module=__name__,
            attempts=1,
            started_at=started,
            finished_at=time.time(),
            input_digest=None,
            code_hash="0",
            output=encoded,
        )
        await storage.write(f"record/{i}.json", data)
    return (time.perf_counter() - clock) / n * 1e6


def entry_timed_step(size: int, entries: list[float]) -> Any:
    """``payload_step`` that notes when each step starts."""
    value = "x" * size

    @action
    async def emit(previous_context: Any) -> str:
        entries.append(time.perf_counter())
        return value

    return emit


async def object_store_steps(storage: Any, n: int, size: int) -> tuple[float, float]:
    """(µs per step in steady state, µs per step of the whole run) for a chain of n steps.

    Steady state is from the first step's start to the last one's, over n - 1:
    each interval is one step's encoding and its committed PUT. The whole
    run adds the start (lease, run.json, summary, one listing) and the end
    (summary, run.json, lease release), a fixed number of small round trips.
    """
    entries: list[float] = []
    whole = await timed(chain(storage, n, entry_timed_step(size, entries)), n)
    steady = (entries[-1] - entries[0]) / (len(entries) - 1) * 1e6
    return steady, whole


async def bench_payload(
    args: argparse.Namespace, table: Table, dotflow: Dotflow, tmp: Path, servers: Servers
) -> None:
    for size, label in PAYLOADS:
        if args.payload_sizes and size not in args.payload_sizes:
            continue
        n = args.payload_n if size < 1_000_000 else max(2, args.payload_n // 5)
        step = payload_step(size)
        record = b"x" * (size + RECORD_SIZE)
        raw, ours, theirs = [], [], []
        for rep in range(args.reps):
            base = tmp / f"payload-{size}-{rep}"
            raw.append(raw_durable_loop(base / "raw", n, record))
            ours.append(await timed(chain(StorageFile(base / "af"), n, step), n))
            if dotflow.available:
                got = dotflow.call("file_chain", n=n, reps=1, root=str(base / "df"), size=size)
                theirs.append(got["us"])
            shutil.rmtree(base, ignore_errors=True)
        table.group(
            "payload",
            f"file, {label} output",
            n,
            [
                ("raw durable write (floor)", median(raw), ""),
                ("asyncflow StorageFile", median(ours), ""),
                (
                    "Dotflow 1.0.1 StorageFile",
                    median(theirs) if theirs else None,
                    f"no fsync; {dotflow.where}",
                ),
            ],
        )
        for kind in ("s3", "gcs"):
            base_spec = servers.spec(kind)
            if base_spec is None:
                continue
            raw, made, steady, whole = [], [], [], []
            spec = {**base_spec, "prefix": f"payload-{size}-{os.urandom(3).hex()}"}
            for _ in range(args.reps):
                storage = _storage_from(spec)
                try:
                    raw.append(await raw_object_puts(storage, n, record))
                    made.append(await record_object_puts(storage, n, size))
                    one, run = await object_store_steps(storage, n, size)
                    steady.append(one)
                    whole.append(run)
                finally:
                    await storage.aclose()
            start_end = (median(whole) - median(steady)) * n / 1e3
            table.group(
                "payload",
                f"{servers.name(kind)}, {label} output",
                n,
                [
                    ("raw PUT of the record's bytes (floor)", median(raw), "same client"),
                    (
                        "making each record + raw PUT (record floor)",
                        median(made),
                        "encode, digest, record bytes; no engine",
                    ),
                    (
                        "asyncflow step, steady state",
                        median(steady),
                        "step start to next step start: encode + committed PUT",
                    ),
                    (
                        "asyncflow whole run / N",
                        median(whole),
                        f"+ start and end of the run, ≈ {start_end:.0f} ms per run",
                    ),
                ],
            )


# -- object-store servers ------------------------------------------------------------


class Servers:
    """SeaweedFS and fake-gcs-server, started once on first use; absent ones are noted."""

    def __init__(self, stack: contextlib.ExitStack, root: Path, table: Table, wanted: bool) -> None:
        self.stack = stack
        self.root = root
        self.table = table
        self.wanted = wanted
        self.specs: dict[str, dict[str, Any] | None] = {}

    def name(self, kind: str) -> str:
        return {"s3": "S3 (SeaweedFS)", "gcs": "GCS (fake-gcs-server)"}[kind]

    def spec(self, kind: str) -> dict[str, Any] | None:
        if kind in self.specs:
            return self.specs[kind]
        spec: dict[str, Any] | None = None
        if not self.wanted:
            self.table.note(f"{self.name(kind)}: not started (--smoke or --no-servers)")
        else:
            try:
                spec = self._start(kind)
            except BaseException as exc:  # pytest.fail raises a BaseException subclass
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self.table.note(f"{self.name(kind)}: unavailable, skipped ({exc!s:.120})")
        self.specs[kind] = spec
        return spec

    def _start(self, kind: str) -> dict[str, Any]:
        from tests.servers import start_fake_gcs, start_seaweedfs

        if kind == "s3":
            importlib.import_module("aiobotocore")
            s3 = self.stack.enter_context(start_seaweedfs(self.root / "seaweedfs"))
            return {"kind": "s3", "bucket": s3.bucket, "client": s3.client_kwargs()}
        importlib.import_module("gcloud.aio.storage")
        gcs = self.stack.enter_context(start_fake_gcs(self.root / "fake-gcs"))
        return {"kind": "gcs", "bucket": gcs.bucket, "url": gcs.url}


# -- main -------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs, {cpu}, Python {sys.version.split()[0]}, {sys.platform}"


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny N, one repetition, no servers")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="section (repeatable)")
    parser.add_argument("--n", type=_ints, default=[100, 1000, 10000], help="chain lengths")
    parser.add_argument("--file-n", type=_ints, default=None, help="durable chain lengths")
    parser.add_argument(
        "--io-n", type=_ints, default=[200], help="chain lengths of 1 ms I/O steps (file)"
    )
    parser.add_argument("--mem-n", type=_ints, default=[10000, 100000], help="parallel task counts")
    parser.add_argument("--payload-n", type=int, default=50, help="steps per payload size")
    parser.add_argument(
        "--payload-sizes", type=_ints, default=None, help="payload bytes (100,10000,1000000)"
    )
    parser.add_argument("--reps", type=int, default=5, help="repetitions (median reported)")
    parser.add_argument("--dotflow-python", default=DEFAULT_DOTFLOW_PYTHON)
    parser.add_argument("--no-servers", action="store_true", help="skip S3/GCS")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.mem_n, args.payload_n, args.reps = [20], [500], 3, 1
        args.file_n = [10]
        args.io_n = [10]
        args.no_servers = True
    if args.file_n is None:
        args.file_n = [n for n in args.n if n <= 1000] or args.n[:1]
    return args


async def main(args: argparse.Namespace) -> None:
    table = Table()
    dotflow = Dotflow(args.dotflow_python)
    if not dotflow.available:
        table.note(
            "Dotflow 1.0.1 is not importable and no --dotflow-python was found:"
            " its rows are skipped"
        )
    wanted = args.only or list(SECTIONS)
    print(f"machine: {machine()}; Dotflow: {dotflow.where}", file=sys.stderr)
    with (
        tempfile.TemporaryDirectory(prefix="asyncflow-bench-", dir=".") as name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(name).resolve()
        servers = Servers(stack, tmp / "servers", table, not args.no_servers)
        if "overhead" in wanted:
            await bench_overhead(args, table, dotflow)
        if "file" in wanted:
            await bench_file(args, table, dotflow, tmp)
        if "resume" in wanted:
            await bench_resume(args, table, dotflow, tmp, servers)
        if "parallel" in wanted:
            await bench_parallel(args, table)
        if "payload" in wanted:
            await bench_payload(args, table, dotflow, tmp, servers)
        if "distinct" in wanted:
            import distinct_steps

            distinct_steps.bench(
                table, [n for n in args.n if n <= 1000] or args.n[:1], args.reps, tmp
            )
        peers_report = ""
        if "peers" in wanted:
            import peers

            peers_args = peers.parse(["--smoke"] if args.smoke else ["--reps", str(args.reps)])
            peers_report = peers.run(peers_args)
    print(f"machine: {machine()}")
    print(f"command: python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}".rstrip())
    print(f"Dotflow 1.0.1: {dotflow.where}")
    print()
    print(table.render())
    if peers_report:
        print()
        print(peers_report)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "rows": [r.__dict__ for r in table.rows],
                    "notes": table.notes,
                },
                indent=1,
            )
        )


def child(spec: dict[str, Any]) -> None:
    op = spec.pop("op")
    runner: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] = {
        "resume": child_resume,
        "read_floor": child_read_floor,
        "parallel": child_parallel,
    }[op]
    print(json.dumps(anyio.run(runner, spec)))


if __name__ == "__main__":
    parsed = parse()
    if parsed.child:
        child(json.loads(parsed.child))
    else:
        anyio.run(main, parsed)
