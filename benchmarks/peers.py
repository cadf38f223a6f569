"""asyncflow, LangGraph and DBOS side by side, each in its own virtualenv, each on its floor.

    python benchmarks/peers.py                    # N = 1,000, 5 rounds (several minutes)
    python benchmarks/peers.py --smoke            # tiny sizes, 1 round: checks that it works
    python benchmarks/peers.py --setup            # only create the peers' virtualenvs

Systems: asyncflow (this interpreter, ``StorageFile``), LangGraph 1.2.22 with
``AsyncSqliteSaver`` (langgraph-checkpoint-sqlite 3.1.2; ``InMemorySaver``
for the in-memory row) and DBOS 3.4.0 on a SQLite system database. Each peer
runs in a virtualenv of its own under ``--peers-dir`` (default
``~/.cache/asyncflow-bench/peers``, outside the repository), created here
with ``pip`` from PyPI on first use; ``--no-install`` skips a peer that is
not there yet, saying so. Each side is a script (``_*_side.py``) run by that
virtualenv's Python, with JSON in ``argv`` and JSON out on ``stdout``.

Workloads, the same for each system (each step returns a ~300-byte payload
built from the previous one; distinct step functions, generated as a module):

* ``chain``: a fresh run of N steps, µs per step; and the same in memory.
* ``resume``: a run of N + 1 steps dies (``os._exit``) in its last step; a
  new process resumes it the system's own documented way, which must run
  only that last step (each side counts executions and fails loudly
  otherwise). Time of the resume call, in ms.
* ``fanout``: one step returns M items, M parallel steps, one step gathers.
* ``io``: N steps that each ``await`` 1 ms of sleep, as a multiple of N plain
  awaits in the same process.
* ``first run``: in a fresh process, the library's import, then a 2-step
  durable run (storage opened, schema created, everything lazy included).

Every figure is a fresh subprocess; systems take turns within each round
(rotated), and the median over rounds is reported. Before timing, each side
runs one tiny in-memory flow, so lazy imports land in ``first run`` only.

Floors, measured in the same rounds: a file written, fsynced, renamed and its
directory fsynced (asyncflow's commit); a SQLite ``INSERT`` + ``COMMIT`` of the
same bytes in WAL mode (LangGraph's saver sets WAL) and in SQLite's default
rollback-journal mode (DBOS). Each durable chain is read as a multiple of
its own storage's floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS_DIR = Path(
    os.environ.get("ASYNCFLOW_BENCH_PEERS", Path.home() / ".cache" / "asyncflow-bench" / "peers")
)
PEERS = {
    "LangGraph": ["langgraph==1.2.22", "langgraph-checkpoint-sqlite==3.1.2"],
    "DBOS": ["dbos==3.4.0"],
}
SIDES = {
    "asyncflow": "_asyncflow_side.py",
    "LangGraph": "_langgraph_side.py",
    "DBOS": "_dbos_side.py",
}
CRASH_EXIT = 3
WORKLOADS = ("chain", "memory", "resume", "fanout", "io", "first")
RECORD = b"x" * 400  # about one step's record or row
# How asyncflow's resume is measured: each entry is a name and the ``Config``
# keyword arguments of the run and its resume. Record packs (issue 27) add an
# entry here, e.g. "packed records": {...}, and are measured by the same rounds.
ASYNCFLOW_RESUME_VARIANTS: dict[str, dict[str, Any]] = {"files, one record per step": {}}


# -- the peers' virtualenvs -------------------------------------------------------------


def ensure_peer(name: str, root: Path, install: bool) -> tuple[str | None, str]:
    """(python, note): the peer's interpreter, creating its virtualenv if allowed."""
    home = root / name.lower()
    python = home / "bin" / "python"
    marker = home / "asyncflow-bench-requirements.txt"
    wanted = "\n".join(PEERS[name])
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return str(python), f"{' '.join(PEERS[name])} in {home}"
    if not install:
        return None, f"{name} skipped: no virtualenv at {home} (--setup creates it)"
    print(f"creating {home} with {' '.join(PEERS[name])}", file=sys.stderr)
    shutil.rmtree(home, ignore_errors=True)
    try:
        venv.EnvBuilder(with_pip=True).create(home)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PEERS[name]],
            check=True,
            timeout=900,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return None, f"{name} skipped: installing it failed: {detail.strip()[-300:]}"
    marker.write_text(wanted)
    return str(python), f"{' '.join(PEERS[name])} in {home} (created now)"


# -- running the sides ---------------------------------------------------------------------


class CheckpointCheckFailed(RuntimeError):
    """A side found that its system did not checkpoint: its figures are void."""


def side(python: str, system: str, op: str, **kwargs: Any) -> dict[str, Any]:
    """Run one op of ``system``'s side script in a fresh process; its JSON answer."""
    done = subprocess.run(
        [python, str(HERE / SIDES[system]), json.dumps({"op": op, **kwargs})],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if "CHECKPOINT CHECK FAILED" in done.stderr:
        raise CheckpointCheckFailed(f"{system} {op}: {done.stderr.strip()[-500:]}")
    if op == "prepare_resume":
        if done.returncode != CRASH_EXIT:
            raise RuntimeError(f"{system} prepare did not die as planned:\n{done.stderr[-2000:]}")
        return {}
    if done.returncode != 0:
        raise RuntimeError(f"{system} {op} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- floors -----------------------------------------------------------------------------------


def file_floor(root: Path, n: int) -> float:
    """µs per file written, fsynced, renamed, directory fsynced (asyncflow's commit)."""
    from run import raw_durable_loop

    return raw_durable_loop(root, n, RECORD)


def sqlite_floor(path: Path, n: int, journal: str) -> float:
    """µs per ``INSERT`` + ``COMMIT`` of one row, in ``journal`` mode, synchronous=FULL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA journal_mode={journal}")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE rows (key TEXT PRIMARY KEY, value BLOB)")
        clock = time.perf_counter()
        for i in range(n):
            connection.execute("BEGIN")
            connection.execute("INSERT INTO rows VALUES (?, ?)", (str(i), RECORD))
            connection.execute("COMMIT")
        return (time.perf_counter() - clock) / n * 1e6
    finally:
        connection.close()


FLOORS: dict[str, Callable[[Path, int], float]] = {
    "file write + fsync + rename + fsync dir": file_floor,
    "SQLite INSERT + COMMIT, WAL": lambda d, n: sqlite_floor(d / "wal.db", n, "WAL"),
    "SQLite INSERT + COMMIT, rollback journal": (
        lambda d, n: sqlite_floor(d / "del.db", n, "DELETE")
    ),
}
FLOOR_OF = {
    "asyncflow": "file write + fsync + rename + fsync dir",
    "LangGraph": "SQLite INSERT + COMMIT, WAL",
    "DBOS": "SQLite INSERT + COMMIT, rollback journal",
}


# -- the rounds ---------------------------------------------------------------------------------


@dataclass
class Results:
    figures: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, workload: str, system: str, value: float) -> None:
        self.figures.setdefault(workload, {}).setdefault(system, []).append(value)

    def median(self, workload: str, system: str) -> float | None:
        values = self.figures.get(workload, {}).get(system)
        return statistics.median(values) if values else None


def rotated(items: list[str], turn: int) -> list[str]:
    shift = turn % len(items)
    return items[shift:] + items[:shift]


def measure(args: argparse.Namespace, pythons: dict[str, str], tmp: Path) -> Results:
    results = Results()
    systems = list(pythons)
    prepared: dict[str, Path] = {}
    for system in systems if "resume" in args.workload else []:
        for variant, config in resume_variants(system):
            base = tmp / f"prepared-{system}-{len(prepared)}"
            extra = {"config": config} if config else {}
            side(pythons[system], system, "prepare_resume", n=args.n, root=str(base), **extra)
            prepared[variant] = base
    for turn in range(args.reps):
        print(f"round {turn + 1} of {args.reps}", file=sys.stderr)
        for name, floor in FLOORS.items():
            results.add("floor", name, floor(tmp / f"floor-{turn}", args.floor_n))
        for system in rotated(systems, turn):
            one_round(args, results, pythons[system], system, tmp / f"{system}-{turn}", prepared)
        shutil.rmtree(tmp / f"floor-{turn}", ignore_errors=True)
    return results


def resume_variants(system: str) -> list[tuple[str, dict[str, Any]]]:
    if system == "asyncflow":
        variants = ASYNCFLOW_RESUME_VARIANTS.items()
        return [(f"asyncflow, {name}", config) for name, config in variants]
    return [(system, {})]


def one_round(
    args: argparse.Namespace,
    results: Results,
    python: str,
    system: str,
    root: Path,
    prepared: dict[str, Path],
) -> None:
    run: Callable[..., dict[str, Any]] = lambda op, **kw: side(python, system, op, **kw)  # noqa: E731
    if "chain" in args.workload:
        results.add("chain", system, run("chain", n=args.n, root=str(root / "chain"))["us"])
    if "memory" in args.workload and system != "DBOS":  # DBOS has no in-memory mode
        memory = run("chain", n=args.n, root=str(root / "memory"), storage="memory")
        results.add("chain in memory", system, memory["us"])
    for variant, config in resume_variants(system) if "resume" in args.workload else []:
        copy = root / f"resume-{abs(hash(variant))}"
        shutil.copytree(prepared[variant], copy)
        extra = {"config": config} if config else {}
        got = run("resume", n=args.n, root=str(copy), **extra)
        results.add("resume", variant, got["ms"])
        if "launch_ms" in got:
            results.add("resume: DBOS.launch() part", variant, got["launch_ms"])
    if "fanout" in args.workload:
        fan = run("fanout", n=args.fanout, root=str(root / "fan"))
        results.add("fanout", system, fan["ms"])
    if "io" in args.workload:
        io = run("io_chain", n=args.io, root=str(root / "io"))
        results.add("io", system, io["ratio"])
    if "io" in args.workload and system == "asyncflow":
        got = run("io_chain", n=args.io, root=str(root / "io-async"), durability="async")
        results.add("io", "asyncflow (durability='async')", got["ratio"])
    if "first" in args.workload:
        first_runs(results, run, system, root)
    shutil.rmtree(root, ignore_errors=True)


def first_runs(
    results: Results, run: Callable[..., dict[str, Any]], system: str, root: Path
) -> None:
    first = run("first_run", root=str(root / "first"))
    results.add("first run", system, first["ms"])
    results.add("import", system, first["import_ms"])
    if system == "asyncflow":
        first = run("first_run", root=str(root / "first-preloaded"), preload_backend=True)
        results.add("first run", "asyncflow (anyio backend loaded at import)", first["ms"])
        results.add("import", "asyncflow (anyio backend loaded at import)", first["import_ms"])


# -- the report ----------------------------------------------------------------------------------


def _cell(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _faster(results: Results, workload: str, peer: str, ours: str = "asyncflow") -> str:
    """How many times faster asyncflow is than ``peer`` (> 1: asyncflow is faster)."""
    theirs, mine = results.median(workload, peer), results.median(workload, ours)
    return "—" if theirs is None or not mine else f"{theirs / mine:.2f}x"


def report(args: argparse.Namespace, results: Results, where: dict[str, str]) -> str:
    systems = ["asyncflow", "LangGraph", "DBOS"]
    lines = [
        f"N = {args.n} (chain, resume), fan-out of {args.fanout}, {args.io} steps of 1 ms I/O;"
        f" median of {args.reps} round(s), each figure a fresh process.",
        "",
        "| workload | asyncflow (StorageFile, sync) | LangGraph (AsyncSqliteSaver) | DBOS (SQLite)"
        " | asyncflow faster than LangGraph | than DBOS |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, workload: str, digits: int = 0, faster: bool = True) -> None:
        if workload not in results.figures:
            return
        cells = [_cell(results.median(workload, s), digits) for s in systems]
        ratios = [_faster(results, workload, p) if faster else "" for p in ("LangGraph", "DBOS")]
        lines.append(f"| {label} | {' | '.join(cells)} | {' | '.join(ratios)} |")

    row(f"chain, N = {args.n}, µs/step", "chain")
    own = []
    for system in systems if "chain" in results.figures else []:
        chain, floor = results.median("chain", system), results.median("floor", FLOOR_OF[system])
        own.append("—" if chain is None or not floor else f"{chain / floor:.2f}x")
    if own:
        lines.append(f"| x its own storage's floor | {' | '.join(own)} |  |  |")
    row("chain in memory (LangGraph InMemorySaver), µs/step", "chain in memory", 1)
    for variant, _ in resume_variants("asyncflow") if "resume" in results.figures else []:
        theirs = results.median("resume", "LangGraph")
        mine = results.median("resume", variant)
        dbos = results.median("resume", "DBOS")
        lines.append(
            f"| resume of N = {args.n} in a new process, ms ({variant.removeprefix('asyncflow, ')})"
            f" | {_cell(mine, 1)} | {_cell(theirs, 1)} | {_cell(dbos, 1)}"
            f" | {'—' if theirs is None or not mine else f'{theirs / mine:.2f}x'}"
            f" | {'—' if dbos is None or not mine else f'{dbos / mine:.2f}x'} |"
        )
    launch = results.median("resume: DBOS.launch() part", "DBOS")
    if launch is not None:
        lines.append(f"| of which DBOS.launch(), ms |  |  | {launch:,.1f} |  |  |")
    row(f"fan-out of {args.fanout}, ms", "fanout", 1)
    row(f"{args.io} steps of 1 ms I/O, x plain awaits", "io", 2, faster=False)
    sync_io = results.median("io", "asyncflow (durability='async')")
    if sync_io is not None:
        lines.append(f"| the same, asyncflow durability='async' | {sync_io:.2f} |  |  |  |  |")
    row("first 2-step durable run in a fresh process, ms", "first run", 1)
    row("its import, ms (not in the row above)", "import", 0)
    preloaded = "asyncflow (anyio backend loaded at import)"
    first, imported = results.median("first run", preloaded), results.median("import", preloaded)
    if first is not None and imported is not None:
        lines.append(
            f"| the same, anyio's asyncio backend imported with asyncflow (proposal): first run"
            f" / import, ms | {first:,.1f} / {imported:,.0f} |  |  |"
            f" {_faster(results, 'first run', 'LangGraph', preloaded)} |  |"
        )
    lines += ["", "| floor (this machine, this run) | µs per commit |", "|---|---:|"]
    for name in FLOORS:
        lines.append(f"| {name} | {_cell(results.median('floor', name), 0)} |")
    lines += ["", *(f"* {system}: {note}" for system, note in where.items())]
    lines += [f"* {note}" for note in results.notes]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--setup", action="store_true", help="only create the peers' virtualenvs")
    parser.add_argument("--no-install", action="store_true", help="never create a virtualenv")
    parser.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS_DIR)
    parser.add_argument("--only", action="append", choices=list(SIDES), help="system (repeatable)")
    parser.add_argument(
        "--workload", action="append", choices=WORKLOADS, help="workload (repeatable; default all)"
    )
    parser.add_argument("--n", type=int, default=1000, help="chain and resume length")
    parser.add_argument("--fanout", type=int, default=200, help="items of the fan-out")
    parser.add_argument("--io", type=int, default=100, help="steps of 1 ms I/O")
    parser.add_argument("--reps", type=int, default=5, help="rounds (median reported)")
    parser.add_argument("--floor-n", type=int, default=200, help="commits per floor figure")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args(argv)
    args.workload = args.workload or list(WORKLOADS)
    if args.smoke:
        args.n, args.fanout, args.io, args.reps, args.floor_n = 20, 10, 10, 1, 20
    return args


def run(args: argparse.Namespace) -> str:
    """Set up, measure, and return the report (markdown)."""
    pythons = {"asyncflow": sys.executable}
    where = {"asyncflow": f"this interpreter, {sys.executable}"}
    for name in PEERS:
        if args.only and name not in args.only:
            continue
        python, note = ensure_peer(name, args.peers_dir, not args.no_install)
        where[name] = note
        if python is not None:
            pythons[name] = python
        print(f"{name}: {note}", file=sys.stderr)
    if args.only and "asyncflow" not in args.only:
        del pythons["asyncflow"]
    if args.setup:
        return "\n".join(f"* {system}: {note}" for system, note in where.items())
    with tempfile.TemporaryDirectory(prefix="asyncflow-peers-") as name:
        results = measure(args, pythons, Path(name))
    if args.json is not None:
        args.json.write_text(json.dumps({"figures": results.figures, "where": where}, indent=1))
    return report(args, results, where)


def main() -> None:
    print(run(parse()))


if __name__ == "__main__":
    main()
