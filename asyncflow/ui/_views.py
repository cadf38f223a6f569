"""How a run's tasks connect on the page: the edges the graph is drawn with."""

from __future__ import annotations

from asyncflow.reading import RunState

__all__ = ["edges"]


def edges(run: RunState) -> list[tuple[str, str]]:
    """The flow's edges (from, to) between task keys.

    Recorded dependencies when the run has them; otherwise what the mode
    implies: a chain for sequential runs, no edges between parallel tasks.
    """
    keys = {task.key for task in run.tasks}
    if run.mode == "graph" or any(task.depends_on for task in run.tasks):
        children: dict[str, list[str]] = {}
        for task in run.tasks:
            if task.parent is not None:
                children.setdefault(task.parent, []).append(task.key)
        found = []
        for task in run.tasks:
            for dep in task.depends_on:
                if dep not in keys:
                    continue
                if task.parent != dep and dep in children:  # fan-in from a map's children
                    found += [(child, task.key) for child in children[dep]]
                else:
                    found.append((dep, task.key))
        return found
    if run.mode == "parallel":
        return []
    return [(a.key, b.key) for a, b in zip(run.tasks, run.tasks[1:], strict=False)]
