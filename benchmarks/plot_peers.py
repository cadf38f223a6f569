"""Plot ``benchmarks/peers.py --json``: each workload, each system, as a multiple of asyncflow.

    python benchmarks/peers.py --json peers.json
    python benchmarks/plot_peers.py peers.json docs/img/peers.png

One bar per system and workload: the system's median time over asyncflow's
(log scale; right of 1 is slower than asyncflow). For the 1 ms I/O chain the
bars are each system's multiple of plain awaits instead. Needs matplotlib
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

WORKLOADS = (
    ("chain", "durable chain, µs/step"),
    ("chain in memory", "chain in memory, µs/step"),
    ("resume", "resume in a new process, ms"),
    ("fanout", "fan-out, ms"),
    ("first run", "first 2-step run, ms"),
)
SYSTEMS = (("asyncflow", "tab:blue"), ("LangGraph", "tab:green"), ("DBOS", "tab:red"))


def median_of(figures: dict[str, dict[str, list[float]]], workload: str, system: str) -> float:
    values = figures.get(workload, {})
    for name, runs in values.items():  # resume variants are named "asyncflow, ..."
        if name == system or (system == "asyncflow" and name.startswith("asyncflow, ")):
            return statistics.median(runs)
    return float("nan")


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    figures = json.loads(source.read_text())["figures"]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    rows = [(w, label) for w, label in WORKLOADS if w in figures]
    height = 0.8 / len(SYSTEMS)
    for index, (system, color) in enumerate(SYSTEMS):
        ratios = []
        for workload, _ in rows:
            base = median_of(figures, workload, "asyncflow")
            ratios.append(median_of(figures, workload, system) / base)
        positions = [row + index * height for row in range(len(rows))]
        ax.barh(positions, ratios, height=height, color=color, label=system)
        for y, ratio in zip(positions, ratios, strict=True):
            if ratio == ratio:  # not NaN
                ax.text(ratio * 1.05, y, f"{ratio:.2f}x", va="center", fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks([row + height for row in range(len(rows))])
    ax.set_yticklabels([label for _, label in rows])
    ax.invert_yaxis()
    ax.set_xlabel("time as a multiple of asyncflow's (log scale; > 1: slower than asyncflow)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("LangGraph (AsyncSqliteSaver) and DBOS (SQLite) vs asyncflow (files)")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main()
