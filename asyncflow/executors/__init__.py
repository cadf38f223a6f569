"""Executors: run each step's function somewhere other than this process.

``DaskExecutor`` is imported lazily, so that ``from asyncflow.executors import
DaskExecutor`` without the ``dask`` extra fails with an error naming the extra
instead of a bare ``ModuleNotFoundError``. See docs/scale-out.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncflow._core.executor import Executor
from asyncflow._kernel.public import publish

if TYPE_CHECKING:
    from asyncflow.executors.dask import DaskExecutor

__all__ = ["DaskExecutor", "Executor"]

_LAZY = {"DaskExecutor": ("asyncflow.executors.dask", "distributed", "dask")}


def __getattr__(name: str) -> Any:
    found = _LAZY.get(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, needs, extra = found
    import importlib

    try:
        importlib.import_module(needs)
    except ImportError as exc:
        raise ImportError(
            f"{name} needs the {needs!r} package: pip install 'asyncflow-durable[{extra}]'"
        ) from exc
    module = importlib.import_module(module_name)
    return getattr(module, name)


publish(__name__, globals())
