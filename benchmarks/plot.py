"""Plot per-step cost vs N from ``benchmarks/run.py --json``: asyncflow, Dotflow, the floor.

    python benchmarks/run.py --json bench.json
    python benchmarks/plot.py bench.json docs/img/per_step.png

Needs matplotlib (``pip install -e '.[bench]'``); asyncflow itself never does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

PANELS = (
    ("overhead", "sequential, in memory", "in memory (StorageDefault)"),
    ("file", "sequential, durable step", "durable file step (StorageFile)"),
    ("resume", "skip N done steps, files", "resume: skip N done steps, files"),
    ("file", "chain of 1 ms I/O steps", "chain of 1 ms I/O steps, files (issue 18)"),
)

_VARIANTS = ("o", "D", "v", "P", "X", "*", "h")


def style(impl: str, index: int = 0) -> dict[str, str]:
    if impl.startswith("asyncflow"):
        dashed = "(before)" in impl
        return {
            "color": "tab:purple" if dashed else "tab:blue",
            "marker": _VARIANTS[index % len(_VARIANTS)],
            "linestyle": ":" if dashed else "-",
        }
    if impl.startswith("Dotflow"):
        return {"color": "tab:orange", "marker": "s"}
    return {"color": "tab:gray", "marker": "^", "linestyle": "--"}


def bars(ax: Axes, series: dict[str, list[tuple[int, float]]], title: str) -> None:
    """One N only (the 1 ms chain): a bar per implementation reads better than dots."""
    names = list(series)
    values = [series[name][0][1] for name in names]
    colors = [style(name)["color"] for name in names]
    ax.barh(range(len(names)), values, color=colors)
    ax.set_yticks(range(len(names)), [_short(name) for name in names], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel(f"µs per step (median), N = {series[names[0]][0][0]}")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)


def _short(name: str) -> str:
    return name if len(name) <= 62 else name[:59] + "…"


def main(source: Path, target: Path) -> None:
    data = json.loads(source.read_text())
    rows = data["rows"]
    fig, grid = plt.subplots(2, 2, figsize=(13, 9))
    axes = list(grid.flat)
    for ax, (section, case, title) in zip(axes, PANELS, strict=True):
        series: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            if row["section"] == section and row["case"] == case and row["us"] is not None:
                series.setdefault(row["impl"], []).append((row["n"], row["us"]))
        if all(len(points) == 1 for points in series.values()):
            bars(ax, series, title)
            continue
        for index, (impl, points) in enumerate(series.items()):
            points.sort()
            ax.plot(
                [n for n, _ in points], [us for _, us in points], label=impl, **style(impl, index)
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N steps")
        ax.set_ylabel("µs per step (median)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"asyncflow vs Dotflow 1.0.1 vs the floor — {data['machine']}", fontsize=9)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
