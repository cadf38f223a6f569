"""The byte-level storage protocol every backend implements.

Backends move opaque bytes and answer conditional writes; everything about
records (encoding, verification, layout) lives once above them, in
``asyncflow._kernel.checkpoint``. That keeps a new backend to five methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

from asyncflow._kernel.errors import ConfigurationError

__all__ = ["Blob", "ClosingStorage", "Storage", "check_children_prefix"]

_S = TypeVar("_S", bound="ClosingStorage")


@dataclass(frozen=True, slots=True)
class Blob:
    """The bytes stored at a key and the backend's version token for them.

    ``version`` is opaque (a content hash, an ETag, a GCS generation); it is
    only ever handed back as ``if_version`` to make a compare-and-swap.
    """

    data: bytes
    version: str


@runtime_checkable
class Storage(Protocol):
    """What a checkpoint backend must provide.

    Contract (checked by ``asyncflow.testing``):

    * ``read`` returns ``None`` only when the key does not exist; any failure
      to find out raises ``StorageError``: a failed read must never look like
      "no checkpoint", or a completed step would silently run again.
    * ``write`` is atomic: a concurrent reader sees the old bytes or the new,
      never a mix. With ``if_absent=True`` it succeeds only if the key does not
      exist; with ``if_version=v`` only if the current version is ``v``.
      Otherwise it raises ``PreconditionFailed`` and writes nothing. Of many
      concurrent conditional writers, exactly one wins.
    * ``delete`` of a missing key is not an error.
    * ``list(prefix)`` yields every key starting with ``prefix``, in
      lexicographic order, across all pages.

    Optional methods (``read_many``, ``write_many``, ``delete_many``,
    ``list_children``, ``tidy``) are the capabilities of
    ``asyncflow._kernel.capabilities``: declared there as small protocols,
    probed there only, and checked by the conformance suite when present.
    """

    @property
    def persistent(self) -> bool:
        """Whether records outlive this process (a fresh process can resume)."""
        ...

    async def read(self, key: str) -> Blob | None: ...

    async def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_version: str | None = None,
    ) -> str: ...

    async def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


class ClosingStorage:
    """Mixin for backends: ``async with storage:`` closes it with ``aclose()``."""

    async def aclose(self) -> None:
        return None

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def check_children_prefix(prefix: str) -> str:
    """Refuse a ``list_children`` prefix that is neither ``""`` nor ends with ``/``.

    Raises ``ConfigurationError`` naming the prefix: the ``list_children``
    helper (``asyncflow._kernel.capabilities``) and every bundled backend's
    ``list_children`` check the same way.
    """
    if prefix and not prefix.endswith("/"):
        raise ConfigurationError(f"list_children prefix must be empty or end with '/': {prefix!r}")
    return prefix
