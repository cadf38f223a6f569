"""Task keys as storage shows them: a map's children, and the records in a listing.

A map ``fetch`` expands into children ``fetch.0``, ``fetch.1``, …: their
keys are built and parsed here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

from asyncflow._kernel.layout import task_key_of

__all__ = ["child_key", "map_child", "record_keys"]


def child_key(map_key: str, index: int) -> str:
    """The key of child ``index`` of map ``map_key``, as the engine names it."""
    return f"{map_key}.{index}"


def map_child(key: str, maps: Iterable[str] | None = None) -> tuple[str, int] | None:
    """``(map key, index)`` when ``key`` is a map child's key (``fetch.3``), else ``None``.

    With ``maps``, only a child of one of those keys counts: ``v1.2`` is a
    plain key in a flow with no map ``v1``.
    """
    head, dot, index = key.rpartition(".")
    if not dot or not index.isdigit() or not head:
        return None
    if maps is not None and head not in maps:
        return None
    return head, int(index)


def record_keys(workflow_id: str, names: Iterable[str]) -> dict[str, str]:
    """``{task key: storage key}`` of the checkpoint records among listed ``names``."""
    found: dict[str, str] = {}
    for name in names:
        key = task_key_of(workflow_id, name)
        if key is not None:
            found[key] = name
    return found
