"""Mermaid diagrams of a run, coloured like Dotflow's checkpoint diagrams.

::

    graph LR
    A[step_one] -->|completed| B[step_two]
    B -->|completed| C[step_three]
    C -->|failed| D((stop))
    style A fill:#4caf50,color:#fff
    style B fill:#4caf50,color:#fff
    style C fill:#f44336,color:#fff

One node per task in flow order, named ``A``, ``B``, … ``Z``, ``AA``, ``AB``…;
each edge is labelled with the outcome of the task it leaves; the last task
leads to ``((done))`` when the run completed and to ``((stop))`` otherwise.
Completed tasks are green (``#4caf50``), failed ones red (``#f44336``),
skipped (restored from a checkpoint), cancelled and not-run ones grey
(``#9e9e9e``), all with white text. These are pure functions: no I/O.

A run in ``graph`` or ``parallel`` mode is drawn as the graph it is
(``render_graph_mermaid``): one node per task labelled by its key, an edge
from each dependency (labelled with that dependency's outcome), every task
that nothing depends on leading to the end node; a ``task.map`` is drawn as
one node ``key [n]`` (``n`` children) fed by the task it maps over::

    graph LR
    A[top]
    B[left]
    C[right]
    D[bottom]
    A -->|completed| B
    A -->|completed| C
    B -->|completed| D
    C -->|completed| D
    D -->|completed| E((done))
    style A fill:#4caf50,color:#fff
    ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from asyncflow.reading import RunState

if TYPE_CHECKING:
    from asyncflow import AsyncFlow

__all__ = [
    "COLORS",
    "GraphNode",
    "flow_mermaid",
    "node_id",
    "render_graph_mermaid",
    "render_mermaid",
    "run_mermaid",
]

COLORS = {
    "completed": "#4caf50",
    "failed": "#f44336",
    "skipped": "#9e9e9e",
    "cancelled": "#9e9e9e",
    "not run": "#9e9e9e",
    "waiting": "#9c27b0",
}
_PLAIN = re.compile(r"[A-Za-z0-9_.\- ]+")


def node_id(index: int) -> str:
    """``A``…``Z``, then ``AA``, ``AB``… (spreadsheet columns)."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def _label(text: str) -> str:
    if _PLAIN.fullmatch(text):
        return f"[{text}]"
    escaped = text.replace("&", "#amp;").replace('"', "#quot;")
    return f'["{escaped}"]'


def render_mermaid(tasks: Iterable[tuple[str, str]], status: str) -> str:
    """A ``graph LR`` of ``(step name, outcome)`` pairs in flow order.

    ``outcome`` is ``completed``, ``failed``, ``skipped``, ``cancelled`` or
    ``not run``; ``status`` is the run's (``completed`` ends in ``((done))``).
    The text ends with a newline.
    """
    nodes = list(tasks)
    lines = ["graph LR"]
    end = f"{node_id(len(nodes))}(({'done' if status == 'completed' else 'stop'}))"
    if not nodes:
        lines.append(end)
    for index, (step, outcome) in enumerate(nodes):
        source = node_id(index) + _label(step) if index == 0 else node_id(index)
        if index + 1 < len(nodes):
            target = node_id(index + 1) + _label(nodes[index + 1][0])
        else:
            target = end
        lines.append(f"{source} -->|{outcome}| {target}")
    for index, (_, outcome) in enumerate(nodes):
        color = COLORS.get(outcome, COLORS["not run"])
        lines.append(f"style {node_id(index)} fill:{color},color:#fff")
    return "\n".join(lines) + "\n"


class GraphNode(NamedTuple):
    """One task of a graph: its key, outcome, dependencies and map size."""

    key: str
    outcome: str
    depends_on: tuple[str, ...] = ()
    children: int | None = None


def render_graph_mermaid(nodes: Sequence[GraphNode], status: str) -> str:
    """A ``graph LR`` of tasks and their dependencies, labelled by key.

    A dependency that is not one of ``nodes`` is ignored. The text ends with
    a newline.
    """
    ids = {node.key: node_id(index) for index, node in enumerate(nodes)}
    outcomes = {node.key: node.outcome for node in nodes}
    end = f"{node_id(len(nodes))}(({'done' if status == 'completed' else 'stop'}))"
    lines = ["graph LR"]
    for node in nodes:
        label = node.key if node.children is None else f"{node.key} [{node.children}]"
        shape = _label(label)
        if node.children is not None:
            shape = f"[{shape}]"  # a subroutine box: a map
        lines.append(f"{ids[node.key]}{shape}")
    feeds: set[str] = set()
    for node in nodes:
        for dep in node.depends_on:
            if dep in ids:
                feeds.add(dep)
                lines.append(f"{ids[dep]} -->|{outcomes[dep]}| {ids[node.key]}")
    if not nodes:
        lines.append(end)
    for node in nodes:
        if node.key not in feeds:
            lines.append(f"{ids[node.key]} -->|{node.outcome}| {end}")
            end = end.partition("((")[0]
    for node in nodes:
        color = COLORS.get(node.outcome, COLORS["not run"])
        lines.append(f"style {ids[node.key]} fill:{color},color:#fff")
    return "\n".join(lines) + "\n"


def run_mermaid(run: RunState) -> str:
    """The diagram of a stored run, as ``asyncflow status --format mermaid`` prints it."""
    tasks = run.flow_tasks
    if run.mode in ("graph", "parallel") or any(task.depends_on for task in tasks):
        return render_graph_mermaid(
            [GraphNode(t.key, t.status, t.depends_on, t.children) for t in tasks], run.status
        )
    return render_mermaid(((task.step, task.status) for task in tasks), run.status)


def flow_mermaid(flow: AsyncFlow) -> str:
    """The diagram of ``flow``'s latest run in this process (after ``await flow.start()``)."""
    tasks = flow.task.queue
    if any(task.depends_on for task in tasks):
        return render_graph_mermaid(
            [GraphNode(t.key, t.outcome, t.depends_on, t.children) for t in tasks],
            flow.status,
        )
    return render_mermaid(((task.name, task.outcome) for task in tasks), flow.status)
