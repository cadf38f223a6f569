"""The run's graph and timeline as inline SVG, drawn on the server.

No JavaScript draws anything: a page is complete as served, and the live
updates swap server-rendered HTML. Colours are the seed's diagrams'
(completed ``#4caf50``, failed ``#f44336``, skipped ``#9e9e9e``), plus a
few for states the seed has no diagram of. Every text is escaped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup, escape

from asyncflow.reading import RunState, TaskState
from asyncflow.ui._views import edges

__all__ = ["COLORS", "MAX_ROWS", "gantt_svg", "graph_svg"]

COLORS = {
    "completed": "#4caf50",
    "failed": "#f44336",
    "skipped": "#9e9e9e",
    "cancelled": "#9e9e9e",
    "not run": "#e0e0e0",
    "pending": "#e0e0e0",
    "running": "#2196f3",
    "waiting": "#ff9800",
    "crashed": "#f44336",
    "reset": "#3f51b5",
}
_DARK_TEXT = {"not run", "pending"}
#: Map children beyond this many are drawn as one node with their counts.
COLLAPSE_OVER = 12
#: Tasks with no edges between them (parallel mode) are laid out this many a row.
GRID_COLUMNS = 6
#: The timeline and the task table show this many tasks at most (the graph folds).
MAX_ROWS = 2000
_NODE_W, _NODE_H, _COL, _ROW = 150, 34, 190, 46
#: A child flow is outlined dashed, a map with a double-weight edge.
_OUTLINE = {
    "flow": ' stroke="#263238" stroke-width="2" stroke-dasharray="5 3"',
    "map": ' stroke="#263238" stroke-width="2"',
}


def _color(status: str) -> str:
    return COLORS.get(status, "#9e9e9e")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@dataclass(slots=True)
class _Node:
    key: str
    label: str
    status: str
    title: str
    href: str | None
    members: list[str]
    kind: str = "step"


def _nodes(run: RunState, link: Callable[[TaskState], str]) -> tuple[list[_Node], dict[str, str]]:
    """Graph nodes in flow order, map children beyond ``COLLAPSE_OVER`` folded into one."""
    families: dict[str, list[TaskState]] = {}
    for task in run.tasks:
        if task.parent is not None:
            families.setdefault(task.parent, []).append(task)
    folded = {name for name, members in families.items() if len(members) > COLLAPSE_OVER}
    nodes: list[_Node] = []
    owner: dict[str, str] = {}
    groups: dict[str, _Node] = {}
    for task in run.tasks:
        family = task.parent
        if family is not None and family in folded:
            node = groups.get(family)
            if node is None:
                node = groups[family] = _Node(f"{family}[*]", "", "", "", None, [])
                nodes.append(node)
            node.members.append(task.status)
            owner[task.key] = node.key
            continue
        title = f"{task.step} (key {task.key}): {task.status}"
        if task.kind == "flow":
            title += f" (child flow {task.child})"
        elif task.kind == "map":
            title += " (map)"
        nodes.append(
            _Node(task.key, task.step, task.status, title, link(task), [task.key], task.kind)
        )
        owner[task.key] = task.key
    for family, node in groups.items():
        counts: dict[str, int] = {}
        for status in node.members:
            counts[status] = counts.get(status, 0) + 1
        worst = next(
            (s for s in ("failed", "running", "waiting", "pending", "not run") if s in counts),
            "completed" if "completed" in counts else "skipped",
        )
        node.status = worst
        node.label = f"{family}[0..{len(node.members) - 1}]"
        node.title = f"{family}: {len(node.members)} mapped tasks: " + ", ".join(
            f"{n} {s}" for s, n in sorted(counts.items())
        )
    return nodes, owner


def graph_svg(run: RunState, link: Callable[[TaskState], str]) -> Markup:
    """The flow as a left-to-right layered graph; each node links to its task."""
    nodes, owner = _nodes(run, link)
    pairs = []
    seen: set[tuple[str, str]] = set()
    for src, dst in edges(run):
        pair = (owner[src], owner[dst])
        if pair[0] != pair[1] and pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    layer: dict[str, int] = {}
    incoming: dict[str, list[str]] = {}
    for src, dst in pairs:
        incoming.setdefault(dst, []).append(src)
    for node in nodes:
        layer[node.key] = 1 + max((layer.get(s, 0) for s in incoming.get(node.key, ())), default=-1)
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for index, node in enumerate(nodes):
        if pairs:
            column = layer[node.key]
            row = rows.get(column, 0)
        else:  # independent tasks: a grid, not one endless column
            row, column = divmod(index, GRID_COLUMNS)
        layer[node.key] = column
        rows[column] = max(rows.get(column, 0), row + 1)
        place[node.key] = (10 + column * _COL, 10 + row * _ROW)
    width = 20 + (max(layer.values(), default=0) + 1) * _COL - (_COL - _NODE_W)
    height = 20 + max(rows.values(), default=1) * _ROW - (_ROW - _NODE_H)
    out = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="task graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"'
        ' fill="#757575"/></marker></defs>',
    ]
    for src, dst in pairs:
        x1, y1 = place[src]
        x2, y2 = place[dst]
        x1, y1, y2 = x1 + _NODE_W, y1 + _NODE_H // 2, y2 + _NODE_H // 2
        bend = (x2 - x1) / 2
        out.append(
            f'<path class="edge" d="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"'
            ' fill="none" stroke="#757575" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    for node in nodes:
        x, y = place[node.key]
        text = "#212121" if node.status in _DARK_TEXT else "#ffffff"
        body = (
            f'<g class="node" data-key="{escape(node.key)}" data-status="{escape(node.status)}">'
            f"<title>{escape(node.title)}</title>"
            f'<rect x="{x}" y="{y}" width="{_NODE_W}" height="{_NODE_H}" rx="6"'
            f' fill="{_color(node.status)}"{_OUTLINE.get(node.kind, "")}/>'
            f'<text x="{x + _NODE_W // 2}" y="{y + _NODE_H // 2 + 4}" text-anchor="middle"'
            f' fill="{text}" font-size="12">{escape(_clip(node.label, 22))}</text></g>'
        )
        if node.href is not None:
            body = f'<a href="{escape(node.href)}">{body}</a>'
        out.append(body)
    out.append("</svg>")
    return Markup("".join(out))


_LABEL_W, _CHART_W, _BAR_H, _LINE = 230, 760, 12, 18


def gantt_svg(run: RunState, link: Callable[[TaskState], str], now: float | None = None) -> Markup:
    """One row per task: a bar from its start to its end, coloured by outcome.

    Restored (skipped) tasks ran in an earlier run: they get no bar, so the
    axis spans this run only. A task with several attempts says so.
    """
    timed = [
        t for t in run.tasks if t.started_at is not None and t.status not in ("skipped", "not run")
    ]
    now = time.time() if now is None else now
    drawn = {t.key for t in timed}
    starts = [t.started_at for t in timed if t.started_at is not None]
    ends = [t.finished_at if t.finished_at is not None else now for t in timed]
    if run.created_at:
        starts.append(run.created_at)
    origin = min(starts, default=0.0)
    span = max([*ends, origin + 1e-3]) - origin
    width = _LABEL_W + _CHART_W + 80
    shown = run.tasks[:MAX_ROWS]
    height = 24 + _LINE * len(shown)
    out = [
        f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="timeline">',
        f'<text x="{_LABEL_W}" y="12" font-size="11" fill="#616161">0 s</text>',
        f'<text x="{_LABEL_W + _CHART_W}" y="12" font-size="11" fill="#616161"'
        f' text-anchor="end">{span:.3f} s</text>',
    ]
    for row, task in enumerate(shown):
        y = 20 + row * _LINE
        label = escape(
            _clip(f"{task.step} ({task.key})" if task.step != task.key else task.key, 34)
        )
        parts = [f'<text x="4" y="{y + 10}" font-size="11" fill="#212121">{label}</text>']
        if task.key in drawn and task.started_at is not None:
            end = task.finished_at if task.finished_at is not None else now
            x = _LABEL_W + (task.started_at - origin) / span * _CHART_W
            w = max(2.0, (end - task.started_at) / span * _CHART_W)
            tries = f", {task.attempts} attempts" if task.attempts and task.attempts > 1 else ""
            took = f"{end - task.started_at:.3f} s"
            parts.append(
                f"<title>{escape(task.key)}: {escape(task.status)}, {took}{tries}</title>"
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{_BAR_H}" rx="2"'
                f' fill="{_color(task.status)}"/>'
            )
            if tries:
                parts.append(
                    f'<text x="{x + w + 4:.1f}" y="{y + 10}" font-size="10" fill="#616161">'
                    f"\u00d7{task.attempts}</text>"
                )
        else:
            note = "restored from checkpoint" if task.status == "skipped" else task.status
            parts.append(
                f"<title>{escape(task.key)}: {escape(note)}</title>"
                f'<text x="{_LABEL_W}" y="{y + 10}" font-size="10"'
                f' fill="#9e9e9e">{escape(note)}</text>'
            )
        out.append(
            f'<a href="{escape(link(task))}"><g class="bar" data-key="{escape(task.key)}"'
            f' data-status="{escape(task.status)}">{"".join(parts)}</g></a>'
        )
    out.append("</svg>")
    return Markup("".join(out))
