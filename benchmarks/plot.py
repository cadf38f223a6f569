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

PANELS = (
    ("overhead", "sequential, in memory", "in memory (StorageDefault)"),
    ("file", "sequential, durable step", "durable file step (StorageFile)"),
    ("resume", "skip N done steps, files", "resume: skip N done steps, files"),
)


def style(impl: str) -> dict[str, str]:
    if impl.startswith("asyncflow"):
        return {"color": "tab:blue", "marker": "o"}
    if impl.startswith("Dotflow"):
        return {"color": "tab:orange", "marker": "s"}
    return {"color": "tab:gray", "marker": "^", "linestyle": "--"}


def main(source: Path, target: Path) -> None:
    data = json.loads(source.read_text())
    rows = data["rows"]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4.2))
    for ax, (section, case, title) in zip(axes, PANELS, strict=True):
        series: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            if row["section"] == section and row["case"] == case and row["us"] is not None:
                series.setdefault(row["impl"], []).append((row["n"], row["us"]))
        for impl, points in series.items():
            points.sort()
            ax.plot([n for n, _ in points], [us for _, us in points], label=impl, **style(impl))
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
