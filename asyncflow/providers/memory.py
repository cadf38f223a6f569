"""``StorageDefault``: checkpoints in this process's memory."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable

from asyncflow._kernel.errors import PreconditionFailed
from asyncflow._kernel.ids import validate_storage_key
from asyncflow._kernel.storage import Blob, ClosingStorage, check_children_prefix

__all__ = ["StorageDefault"]

_versions = itertools.count(1)


class StorageDefault(ClosingStorage):
    """Keeps records in a dict: fast, and gone when the process exits.

    Resume works within one process (a second ``start(resume=True)`` on the
    same storage skips completed steps); across processes use ``StorageFile``
    or an object store. Conditional writes are atomic because nothing awaits
    between the check and the store.
    """

    persistent = False

    def __init__(self) -> None:
        # (data, version) pairs, not Blobs: a tuple of bytes and str is cheaper
        # to build and is untracked by the garbage collector.
        self._data: dict[str, tuple[bytes, str]] = {}

    async def read(self, key: str) -> Blob | None:
        stored = self._data.get(key)  # a stored key was validated when it was written
        if stored is None:
            validate_storage_key(key)
            return None
        return Blob(*stored)

    async def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_version: str | None = None,
    ) -> str:
        if type(data) is not bytes and not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        current = self._data.get(key) if type(key) is str else None
        if current is None:
            validate_storage_key(key)
        if if_absent and current is not None:
            raise PreconditionFailed(f"{key} already exists")
        if if_version is not None and (current is None or current[1] != if_version):
            raise PreconditionFailed(f"{key} is not at version {if_version}")
        version = str(next(_versions))
        self._data[key] = (data, version)
        return version

    def instant_writer(self) -> Callable[[str, bytes], str] | None:
        """The engine's commit of an in-memory step: ``_put``, a write that never suspends.

        ``None`` for a subclass that overrides ``write``: its records must go
        through that override (see ``asyncflow._kernel.capabilities``).
        """
        if type(self).write is not StorageDefault.write:
            return None
        return self._put

    def _put(self, key: str, data: bytes) -> str:
        """An unconditional ``write`` of a record key the engine built from validated ids.

        The engine's commit of each in-memory step: no coroutine, no second
        validation of a key made of a checked workflow id and task key.
        """
        version = str(next(_versions))
        self._data[key] = (data, version)
        return version

    async def delete(self, key: str) -> None:
        self._data.pop(validate_storage_key(key), None)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        for key in sorted(k for k in self._data if k.startswith(prefix)):
            yield key

    async def list_versions(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        """``list`` with each key's version (the ``list_versions`` capability)."""
        found = sorted((k, v[1]) for k, v in self._data.items() if k.startswith(prefix))
        for item in found:
            yield item

    async def list_children(self, prefix: str) -> AsyncIterator[str]:
        check_children_prefix(prefix)
        segments = set()
        for key in self._data:
            if key.startswith(prefix):
                head, sep, _ = key[len(prefix) :].partition("/")
                segments.add(head + sep)
        for segment in sorted(segments):
            yield segment

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"StorageDefault(<{len(self._data)} records>)"
