"""A flow of N distinct step functions vs the same flow of one repeated function.

    python benchmarks/distinct_steps.py               # N = 1,000, 5 repetitions
    python benchmarks/distinct_steps.py --smoke       # N = 20, 1 repetition
    python benchmarks/run.py --only distinct          # the same, as a section of run.py

Real flows have a function per step, so any cost paid once per function
(its code hash, say) is paid N times there and once in a benchmark that adds
one function N times. Both flows come from one generated module (written to a
temporary directory and imported): ``step_0`` ... ``step_{N-1}``, and
``repeated``, all with the same body. Each figure is a fresh process (a code
hash is computed once per function per process), the module already
imported and the flow built, timing ``start()`` only, on ``StorageFile``:

* fresh durable run (default durability ``sync``), µs per step;
* resume of N completed steps (all skipped), µs per step, and the read+parse
  floor of the same record files (open, read, ``json.loads`` each);
* the code hash alone: µs per function for the distinct module, against
  ``inspect.getsource`` + SHA-256 (the scheme before round 3).

Ratios: distinct / repeated (target ≤ 1.10x; also in CPU time, steadier than wall
time on a shared machine) and resume / its floor
(target ≤ 2x), the median of the per-repetition ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from asyncflow import AsyncFlow, Config  # noqa: E402
from asyncflow.providers import StorageFile  # noqa: E402

STEP = '''
@action
async def {name}(previous_context=None):
    """A step of the benchmark: the same body in every function."""
    CALLS.append(1)
    return 1
'''


def module_source(n: int) -> str:
    steps = [STEP.format(name=f"step_{i}") for i in range(n)]
    return (
        "from asyncflow import action\n\nCALLS = []\n"
        + "".join(steps)
        + STEP.format(name="repeated")
    )


def load(directory: str, n: int) -> Any:
    sys.path.insert(0, directory)
    return importlib.import_module(f"distinct_{n}")


def flow_of(module: Any, kind: str, n: int, root: str, workflow_id: str) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=StorageFile(root)), workflow_id=workflow_id)
    for i in range(n):
        step = getattr(module, f"step_{i}") if kind == "distinct" else module.repeated
        flow.task.add(step, key=f"k{i}")
    return flow


async def child_fresh(spec: dict[str, Any]) -> dict[str, Any]:
    module = load(spec["modules"], spec["n"])
    flow = flow_of(module, spec["kind"], spec["n"], spec["root"], "fresh")
    clock, cpu = time.perf_counter(), time.process_time()
    await flow.start()
    seconds, cpu = time.perf_counter() - clock, time.process_time() - cpu
    assert len(module.CALLS) == spec["n"], len(module.CALLS)
    return {"us": seconds / spec["n"] * 1e6, "cpu_us": cpu / spec["n"] * 1e6}


async def child_prepare(spec: dict[str, Any]) -> dict[str, Any]:
    module = load(spec["modules"], spec["n"])
    await flow_of(module, spec["kind"], spec["n"], spec["root"], "resume").start()
    return {}


async def child_resume(spec: dict[str, Any]) -> dict[str, Any]:
    module = load(spec["modules"], spec["n"])
    flow = flow_of(module, spec["kind"], spec["n"], spec["root"], "resume")
    clock, cpu = time.perf_counter(), time.process_time()
    await flow.start(resume=True)
    seconds, cpu = time.perf_counter() - clock, time.process_time() - cpu
    if module.CALLS:
        raise SystemExit(f"the resume re-ran {len(module.CALLS)} steps: no checkpoint was used")
    return {"us": seconds / spec["n"] * 1e6, "cpu_us": cpu / spec["n"] * 1e6}


async def child_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """Open, read and ``json.loads`` the same record files: a resume's floor."""
    from run import child_read_floor

    return await child_read_floor({**spec, "workflow_id": "resume"})


async def child_hash(spec: dict[str, Any]) -> dict[str, Any]:
    """µs per code hash of the distinct functions: this scheme, and ``inspect.getsource``."""
    module = load(spec["modules"], spec["n"])
    steps = [getattr(module, f"step_{i}") for i in range(spec["n"])]
    clock = time.perf_counter()
    for step in steps:
        assert step.code_hash
    ours = (time.perf_counter() - clock) / len(steps) * 1e6
    clock = time.perf_counter()
    for step in steps:
        hashlib.sha256(inspect.getsource(step.func).encode()).hexdigest()
    before = (time.perf_counter() - clock) / len(steps) * 1e6
    return {"us": ours, "getsource_us": before}


CHILDREN = {
    "fresh": child_fresh,
    "prepare": child_prepare,
    "resume": child_resume,
    "floor": child_floor,
    "hash": child_hash,
}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"distinct-steps child {spec['op']} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def paired(values: dict[str, list[float]], name: str, base: str) -> float:
    return statistics.median(a / b for a, b in zip(values[name], values[base], strict=True))


def bench(table: Any, ns: list[int], reps: int, tmp: Path) -> None:
    """Add the section's rows to ``table`` (``benchmarks/run.py``'s ``Table``)."""
    for n in ns:
        modules = tmp / f"distinct-modules-{n}"
        modules.mkdir(parents=True, exist_ok=True)
        (modules / f"distinct_{n}.py").write_text(module_source(n))
        base = {"modules": str(modules), "n": n}
        for kind in ("distinct", "repeated"):
            child({**base, "op": "prepare", "kind": kind, "root": str(tmp / f"resume-{kind}-{n}")})
        got: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        hashes, getsource = [], []
        for rep in range(reps):
            runs = ["fresh distinct", "fresh repeated", "resume distinct", "resume repeated"]
            runs += ["floor distinct", "floor repeated"]
            shift = rep % len(runs)
            for name in runs[shift:] + runs[:shift]:
                op, kind = name.split()
                root = tmp / (f"fresh-{kind}-{n}-{rep}" if op == "fresh" else f"resume-{kind}-{n}")
                result = child({**base, "op": op, "kind": kind, "root": str(root)})
                got.setdefault(name, []).append(result["us"])
                if "cpu_us" in result:
                    cpu.setdefault(name, []).append(result["cpu_us"])
            hashed = child({**base, "op": "hash"})
            hashes.append(hashed["us"])
            getsource.append(hashed["getsource_us"])
        median = {name: statistics.median(values) for name, values in got.items()}
        table.group(
            "distinct",
            "fresh durable run, files",
            n,
            [
                ("one function repeated N times", median["fresh repeated"], ""),
                (
                    "N distinct functions",
                    median["fresh distinct"],
                    f"= {paired(got, 'fresh distinct', 'fresh repeated'):.2f}x repeated"
                    f" (target ≤ 1.10x); CPU time"
                    f" {paired(cpu, 'fresh distinct', 'fresh repeated'):.2f}x",
                ),
            ],
        )
        table.group(
            "distinct",
            "resume of N done steps, files",
            n,
            [
                ("open + read + json.loads each record (floor)", median["floor distinct"], ""),
                (
                    "one function repeated N times",
                    median["resume repeated"],
                    f"= {paired(got, 'resume repeated', 'floor repeated'):.2f}x its floor",
                ),
                (
                    "N distinct functions",
                    median["resume distinct"],
                    f"= {paired(got, 'resume distinct', 'resume repeated'):.2f}x repeated"
                    f" (target ≤ 1.10x; CPU time"
                    f" {paired(cpu, 'resume distinct', 'resume repeated'):.2f}x);"
                    f" {paired(got, 'resume distinct', 'floor distinct'):.2f}x its floor"
                    " (target ≤ 2x)",
                ),
            ],
        )
        table.group(
            "distinct",
            "code hash of one function",
            n,
            [
                ("inspect.getsource + sha256 (before)", statistics.median(getsource), ""),
                ("Action.code_hash (one read per module)", statistics.median(hashes), ""),
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="N = 20, one repetition")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(anyio.run(CHILDREN[spec.pop("op")], spec)))
        return
    if args.smoke:
        args.n, args.reps = 20, 1
    from run import Table, machine

    table = Table()
    with tempfile.TemporaryDirectory(prefix="asyncflow-distinct-") as name:
        bench(table, [args.n], args.reps, Path(name))
    print(f"machine: {machine()}")
    print(table.render())


if __name__ == "__main__":
    main()
