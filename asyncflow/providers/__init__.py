"""Storage backends.

``StorageDefault`` and ``StorageFile`` need nothing beyond asyncflow's own
dependencies. ``StorageS3`` and ``StorageGCS`` are imported lazily, so that
``from asyncflow.providers import StorageS3`` without the ``s3`` extra fails
with an error naming the extra instead of a bare ``ModuleNotFoundError``.

Beside ``Storage``, the optional capabilities a backend may declare
(``SupportsReadMany`` ...), ``Capabilities.of(storage)`` that tells which
one has, and the helpers that use a capability when it is there and the
plain methods otherwise (``read_many``, ``delete_many``, ``list_children``,
``list_versions``);
see ``docs/storage.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncflow._kernel.capabilities import (
    Capabilities,
    SupportsDeleteMany,
    SupportsListChildren,
    SupportsListVersions,
    SupportsReadMany,
    SupportsTidy,
    SupportsWriteMany,
    delete_many,
    list_children,
    list_versions,
    read_many,
)
from asyncflow._kernel.public import publish
from asyncflow._kernel.storage import Blob, Storage
from asyncflow.providers.file import StorageFile
from asyncflow.providers.memory import StorageDefault

if TYPE_CHECKING:
    from asyncflow.providers.gcs import StorageGCS
    from asyncflow.providers.s3 import StorageS3

__all__ = [
    "Blob",
    "Capabilities",
    "Storage",
    "StorageDefault",
    "StorageFile",
    "StorageGCS",
    "StorageS3",
    "SupportsDeleteMany",
    "SupportsListChildren",
    "SupportsListVersions",
    "SupportsReadMany",
    "SupportsTidy",
    "SupportsWriteMany",
    "delete_many",
    "list_children",
    "list_versions",
    "read_many",
    "storage_from_url",
]

_LAZY = {"StorageS3": "asyncflow.providers.s3", "StorageGCS": "asyncflow.providers.gcs"}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(module_name)
    return getattr(module, name)


def storage_from_url(url: str) -> Storage:
    """Build a backend from a URL: ``file://PATH``, ``memory://``, ``s3://bucket/prefix``,
    ``gs://bucket/prefix``. Cloud endpoints and credentials come from the SDKs' usual
    environment (``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``...)."""
    from asyncflow._kernel.errors import ConfigurationError

    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"storage URL {url!r} needs a scheme: file://, memory://, s3:// or gs://"
        )
    if scheme == "file":
        return StorageFile(rest or ".asyncflow")
    if scheme == "memory":
        return StorageDefault()
    bucket, _, prefix = rest.partition("/")
    if scheme in ("s3", "gs") and not bucket:
        raise ConfigurationError(f"storage URL {url!r} names no bucket")
    if scheme == "s3":
        storage_s3: Storage = __getattr__("StorageS3")(bucket, prefix=prefix)
        return storage_s3
    if scheme == "gs":
        storage_gcs: Storage = __getattr__("StorageGCS")(bucket, prefix=prefix)
        return storage_gcs
    raise ConfigurationError(
        f"storage URL scheme {scheme!r} is not one of file://, memory://, s3://, gs://"
    )


publish(__name__, globals())
