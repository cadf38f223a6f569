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
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from asyncflow._core.status import RunState, task_outcome

if TYPE_CHECKING:
    from asyncflow._core.flow import AsyncFlow

__all__ = ["COLORS", "flow_mermaid", "node_id", "render_mermaid", "run_mermaid"]

COLORS = {
    "completed": "#4caf50",
    "failed": "#f44336",
    "skipped": "#9e9e9e",
    "cancelled": "#9e9e9e",
    "not run": "#9e9e9e",
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


def run_mermaid(run: RunState) -> str:
    """The diagram of a stored run, as ``asyncflow status --format mermaid`` prints it."""
    return render_mermaid(((task.step, task.status) for task in run.tasks), run.status)


def flow_mermaid(flow: AsyncFlow) -> str:
    """The diagram of ``flow``'s latest run in this process (after ``await flow.start()``)."""
    return render_mermaid(
        ((task.name, task_outcome(task)) for task in flow.task.queue), flow.status
    )
