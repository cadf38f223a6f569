"""Public names under their public module: ``asyncflow.AsyncFlow``, not ``asyncflow._core.flow``.

Tracebacks, ``repr``s, the docs and the run summaries on disk name a class by
its ``__module__``; the private module a class happens to live in today is
nobody's business and may move. Each public module calls ``publish`` once,
after its imports (as trio and httpx do).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

__all__ = ["is_private", "publish"]


def is_private(module: str) -> bool:
    """Whether ``module`` (a dotted name) has a component starting with ``_``."""
    return any(part.startswith("_") for part in module.split("."))


def publish(module: str, namespace: Mapping[str, object]) -> None:
    """Give every class and function of ``namespace["__all__"]`` that a private module
    defines ``module`` as its ``__module__``; one already public keeps its own."""
    names = namespace.get("__all__", ())
    assert isinstance(names, (list, tuple))
    for name in names:
        obj = namespace.get(name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if is_private(getattr(obj, "__module__", "") or ""):
            obj.__module__ = module
