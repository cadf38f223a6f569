"""Storage backends.

``StorageDefault`` and ``StorageFile`` need nothing beyond asyncflow's own
dependencies. ``StorageS3`` and ``StorageGCS`` are imported lazily, so that
``from asyncflow.providers import StorageS3`` without the ``s3`` extra fails
with an error naming the extra instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncflow._core.storage import Blob, Storage
from asyncflow.providers.file import StorageFile
from asyncflow.providers.memory import StorageDefault

if TYPE_CHECKING:
    from asyncflow.providers.gcs import StorageGCS
    from asyncflow.providers.s3 import StorageS3

__all__ = ["Blob", "Storage", "StorageDefault", "StorageFile", "StorageGCS", "StorageS3"]

_LAZY = {"StorageS3": "asyncflow.providers.s3", "StorageGCS": "asyncflow.providers.gcs"}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(module_name)
    return getattr(module, name)
