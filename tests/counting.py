"""A storage wrapper for tests that assert what a read path touches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from asyncflow.providers import Blob, Storage


class CountingStorage:
    """Records every key read and every listing (``children:`` marks ``list_children``,
    ``versions:`` marks ``list_versions``)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.reads: list[str] = []
        self.lists: list[str] = []

    @property
    def persistent(self) -> bool:
        return self.inner.persistent

    async def read(self, key: str) -> Blob | None:
        self.reads.append(key)
        return await self.inner.read(key)

    async def write(self, key: str, data: bytes, **kwargs: Any) -> str:
        return await self.inner.write(key, data, **kwargs)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        self.lists.append(prefix)
        async for key in self.inner.list(prefix):
            yield key

    async def list_versions(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        self.lists.append(f"versions:{prefix}")
        async for item in self.inner.list_versions(prefix):  # type: ignore[attr-defined]
            yield item

    async def list_children(self, prefix: str) -> AsyncIterator[str]:
        self.lists.append(f"children:{prefix}")
        async for segment in self.inner.list_children(prefix):  # type: ignore[attr-defined]
            yield segment

    async def aclose(self) -> None:
        await self.inner.aclose()

    def records_read(self) -> list[str]:
        """The task records read, sorted."""
        return sorted(key for key in self.reads if "/tasks/" in key)
