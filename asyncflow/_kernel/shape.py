"""The flow's shape, read from ``run.json`` or a flow: what depends on a task.

``dependents`` is what ``rerun_from``, ``asyncflow reset --from`` and
``fork --from`` invalidate; ``close_matches`` the "did you mean" of every
name a user can mistype (keys, ids, modes).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncflow._kernel.errors import ConfigurationError

__all__ = ["RunShape", "close_matches", "dependents", "graph_edges"]


@dataclass(frozen=True, slots=True)
class RunShape:
    """A run's graph: each key's dependencies, the kind of each key that is not a plain
    step (``map``, ``flow``), what each map maps over and how many children it had.

    ``run.json`` has the latest run's; a run summary keeps its own, so a past
    run is drawn as it ran even after the flow changed.
    """

    depends_on: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    over: dict[str, str] = field(default_factory=dict)
    children: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.depends_on or self.kinds)

    def to_json(self) -> dict[str, Any]:
        return {
            "depends_on": {key: list(deps) for key, deps in self.depends_on.items()},
            "kinds": self.kinds,
            "over": self.over,
            "children": self.children,
        }

    @classmethod
    def from_json(cls, raw: Any) -> RunShape:
        """``ValueError`` naming what is malformed."""
        if not isinstance(raw, dict):
            raise ValueError("shape is not an object")
        depends_on, kinds = raw.get("depends_on", {}), raw.get("kinds", {})
        over, children = raw.get("over", {}), raw.get("children", {})
        if not all(isinstance(part, dict) for part in (depends_on, kinds, over, children)):
            raise ValueError("shape.depends_on, kinds, over and children must be objects")
        if not all(
            isinstance(deps, list) and all(isinstance(d, str) for d in deps)
            for deps in depends_on.values()
        ):
            raise ValueError("shape.depends_on must map keys to lists of keys")
        if not all(isinstance(v, str) for v in (*kinds.values(), *over.values())):
            raise ValueError("shape.kinds and shape.over must map keys to strings")
        if not all(type(n) is int and n >= 0 for n in children.values()):
            raise ValueError("shape.children must map maps to counts")
        return cls(
            {key: tuple(deps) for key, deps in depends_on.items()},
            dict(kinds),
            dict(over),
            dict(children),
        )


def close_matches(word: str, choices: Sequence[str], *, limit: int = 3) -> str:
    """`` (did you mean 'a' or 'b'?)``, or ``""`` when nothing is close."""
    found = difflib.get_close_matches(word, list(choices), n=limit, cutoff=0.6)
    if not found:
        return ""
    quoted = [repr(name) for name in found]
    text = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f" (did you mean {text}?)"


def dependents(
    key: str,
    *,
    mode: str,
    keys: Sequence[str],
    groups: Sequence[str] = (),
    depends_on: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """``key`` and every task that depends on it, in flow order.

    ``sequential`` / ``sequential_group`` / ``background``: the later tasks of
    the same chain (group); ``parallel``: the task alone; ``graph``: the
    transitive dependents along the recorded ``depends_on``. The shape comes
    from ``run.json`` (or the flow being started), never from importing code.
    """
    order = list(keys)
    if key not in order:
        raise ConfigurationError(f"no task key {key!r} in the flow{close_matches(key, order)}")
    if mode == "parallel":
        return [key]
    if mode == "graph":
        if depends_on is None:
            raise ConfigurationError(
                "the run's recorded shape has no depends_on: cannot tell what depends on"
                f" {key!r} in graph mode"
            )
        found = {key}
        changed = True
        while changed:
            changed = False
            for name in order:
                if name not in found and any(d in found for d in depends_on.get(name, ())):
                    found.add(name)
                    changed = True
        return [name for name in order if name in found]
    where = order.index(key)
    chain = list(groups) if len(groups) == len(order) else ["default"] * len(order)
    group = chain[where]
    return [name for i, name in enumerate(order) if i >= where and chain[i] == group]


def graph_edges(
    keys: Sequence[str], depends_on: Mapping[str, Sequence[str]], over: Mapping[str, str]
) -> dict[str, tuple[str, ...]]:
    """Each key's dependencies in a graph: its ``depends_on`` and, for a map, what it maps over."""
    return {
        key: tuple(depends_on.get(key, ())) + ((over[key],) if key in over else ()) for key in keys
    }
