"""Optional storage capabilities: what a backend may offer beyond ``Storage``.

A backend needs only the five methods of ``Storage``. Each capability below
is one more method that makes some operation cheaper (one thread hop or one
request for many keys, a delimiter listing); asyncflow works without any of
them, by a slower path that gives the same answer. The conformance suite
(``asyncflow.testing``) checks every capability a backend declares, as
strictly as the required methods.

``Capabilities.of(storage)`` is the only place that asks a storage what it
declares; the helpers here (``read_many``, ``delete_many``,
``list_children``) take the capability when it is there and the fallback
otherwise, so no other module branches on it.

Two rules of the probe, both kept from how the engine always looked:

* A public capability is looked up on the instance, so a wrapper that
  delegates through ``__getattr__`` offers its inner storage's, and
  ``read_many = None`` on a class hides an inherited one.
* The two engine fast paths that bypass ``write`` (``instant_writer``:
  ``StorageDefault``; ``background_writer``: ``StorageFile``) are looked up
  on the class, so a ``__getattr__`` wrapper never inherits them, and each
  answers ``None`` for a subclass that overrides ``write`` (or
  ``write_many``): every record must go through the override then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol, cast

from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.errors import ConfigurationError, StorageError
from asyncflow._kernel.storage import Blob, Storage, check_children_prefix

if TYPE_CHECKING:
    from asyncflow._kernel.writer import WriterSession

__all__ = [
    "READ_MANY_CHUNK",
    "REQUIRED",
    "Capabilities",
    "SupportsBackgroundWriter",
    "SupportsDeleteMany",
    "SupportsInstantWrite",
    "SupportsListChildren",
    "SupportsListVersions",
    "SupportsReadMany",
    "SupportsTidy",
    "SupportsWriteMany",
    "delete_many",
    "list_children",
    "list_versions",
    "read_many",
    "require_storage",
]

#: Keys per ``read_many`` call: bounds what one call holds in memory.
READ_MANY_CHUNK = 512

#: The methods every storage must have (the ``Storage`` protocol).
REQUIRED: tuple[str, ...] = ("read", "write", "delete", "list", "aclose")


class SupportsReadMany(Protocol):
    """``read_many(keys)``: the blobs of many keys in one call.

    Returns one entry per key, in the order given: the ``Blob`` that
    ``read(key)`` would return, or ``None`` when the key does not exist
    (never for any other reason: a failure raises ``StorageError``). Every
    key is validated before any is read (``ConfigurationError``). Resume,
    ``asyncflow list`` and a worker's scan read through it, 512 keys a call.
    """

    async def read_many(self, keys: list[str]) -> list[Blob | None]: ...


class SupportsWriteMany(Protocol):
    """``write_many(items)``: unconditional writes of many ``(key, data)`` pairs at once.

    Returns the new versions, in the order given. Each record is atomic as
    with ``write``; when it returns, every one is durable. Every key is
    validated before anything is written. ``durability="batch"`` hands each
    batch of records to it (``StorageFile``: one ``syncfs`` per batch).
    """

    async def write_many(self, items: list[tuple[str, bytes]]) -> list[str]: ...


class SupportsDeleteMany(Protocol):
    """``delete_many(keys)``: delete many keys at once; a missing key is not an error.

    Every key is validated before anything is deleted. ``clear``, retention
    and a fresh run delete through it (S3: ``DeleteObjects``, 1000 a request).
    """

    async def delete_many(self, keys: list[str]) -> None: ...


class SupportsListChildren(Protocol):
    """``list_children(prefix)``: the next path segment of every key under ``prefix``.

    ``prefix`` is ``""`` or ends with ``/`` (any other raises
    ``ConfigurationError``, see ``check_children_prefix``). Yields, sorted and
    once each, ``name/`` for a folder and ``name`` for a key right there: a
    delimiter listing. ``asyncflow list`` and a worker's scan find workflow
    ids with it without listing every record.
    """

    def list_children(self, prefix: str) -> AsyncIterator[str]: ...


class SupportsListVersions(Protocol):
    """``list_versions(prefix)``: ``list`` with each key's version token, ``(key, token)``.

    The same keys as ``list(prefix)``, in the same order, across all pages,
    each with a token that a listing gives without reading the object (S3:
    its ETag; GCS: its generation; files: inode, size and modification time).
    Two listings give a key the same token only while it holds the same
    bytes: any write of other bytes changes it. It need not be the
    ``version`` that ``read`` gives. A resume trusts a record's copy in the
    workflow's pack only while its token is the one the pack recorded
    (DESIGN §15), so one listing replaces a read per record.
    """

    def list_versions(self, prefix: str) -> AsyncIterator[tuple[str, str]]: ...


class SupportsTidy(Protocol):
    """``tidy(prefix)``: remove what deleted records left behind under ``prefix``.

    For backends with litter beside the records (``StorageFile``: lock files
    of conditional writes, empty folders). Never removes a record: every key
    that ``list`` yields before reads the same after. ``""`` (the whole
    storage) raises ``ConfigurationError``. Returns how many entries went.
    ``asyncflow clear`` calls it after deleting a workflow.
    """

    async def tidy(self, prefix: str) -> int: ...


class SupportsInstantWrite(Protocol):
    """Engine-internal: a write that never suspends (``StorageDefault``).

    ``instant_writer()`` returns a synchronous unconditional write for keys
    the engine built from validated ids, or ``None`` when it does not apply
    (a subclass overriding ``write``). A step's commit then needs neither an
    ``await`` nor a cancel shield: nothing can interrupt it midway.
    """

    def instant_writer(self) -> Callable[[str, bytes], object] | None: ...


class SupportsBackgroundWriter(Protocol):
    """Engine-internal: one long-lived writer thread for a run's records (``StorageFile``).

    ``background_writer()`` returns a session context manager per run (see
    ``asyncflow._kernel.writer``), or ``None`` when it does not apply (a
    subclass overriding ``write`` or ``write_many``).
    """

    def background_writer(self) -> AbstractAsyncContextManager[WriterSession] | None: ...


_PUBLIC = ("read_many", "write_many", "delete_many", "list_children", "list_versions", "tidy")
_ON_CLASS = ("instant_writer", "background_writer")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one storage declares: each field is its bound method, or ``None`` without it.

    ``instant_writer`` and ``background_writer`` are the openers: the engine
    calls them (once per run) and takes ``None`` as "not for this storage".
    """

    read_many: Callable[[list[str]], Awaitable[list[Blob | None]]] | None = None
    write_many: Callable[[list[tuple[str, bytes]]], Awaitable[list[str]]] | None = None
    delete_many: Callable[[list[str]], Awaitable[None]] | None = None
    list_children: Callable[[str], AsyncIterator[str]] | None = None
    list_versions: Callable[[str], AsyncIterator[tuple[str, str]]] | None = None
    tidy: Callable[[str], Awaitable[int]] | None = None
    instant_writer: Callable[[], Callable[[str, bytes], object] | None] | None = None
    background_writer: Callable[[], AbstractAsyncContextManager[WriterSession] | None] | None = None

    @classmethod
    def of(cls, storage: object) -> Capabilities:
        """Probe ``storage``; a capability set to something not callable is refused.

        ``ConfigurationError`` names the storage and the attribute: a capability
        that is anything else (a flag, a string) must not pass for "not declared".
        """
        found: dict[str, Any] = {}
        for name in _PUBLIC:
            found[name] = _callable(storage, name, getattr(storage, name, None))
        for name in _ON_CLASS:
            if getattr(type(storage), name, None) is not None:
                found[name] = _callable(storage, name, getattr(storage, name))
        return cls(**found)

    @property
    def declared(self) -> tuple[str, ...]:
        """The names of the capabilities present, in field order."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is not None)


def _callable(storage: object, name: str, value: Any) -> Any:
    if value is None or callable(value):
        return value
    raise ConfigurationError(
        f"storage {storage!r}: {name} is {type(value).__name__}, not a method;"
        " an optional storage capability is a method, or absent (None)"
    )


def require_storage(storage: object, owner: str) -> None:
    """Refuse ``storage`` unless it has every method of ``Storage``; ``owner`` says whose."""
    for method in REQUIRED:
        if not callable(getattr(storage, method, None)):
            raise ConfigurationError(
                f"{owner} {storage!r} does not implement {method}()"
                " of the asyncflow Storage protocol"
            )


async def read_many(
    storage: Storage, keys: Iterable[str], *, concurrency: int = 16
) -> list[Blob | None]:
    """The blob of each key, in order, ``None`` for a missing one.

    Through the storage's ``read_many``, ``READ_MANY_CHUNK`` keys a call,
    when it declares one (``StorageFile``: one thread hop per chunk instead
    of one per file); otherwise ``concurrency`` concurrent ``read`` calls.
    The first error raises as itself.
    """
    wanted = list(keys)
    batch = Capabilities.of(storage).read_many
    if batch is not None:
        found: list[Blob | None] = []
        for start in range(0, len(wanted), READ_MANY_CHUNK):
            chunk = wanted[start : start + READ_MANY_CHUNK]
            blobs = await batch(chunk)
            if len(blobs) != len(chunk):
                raise StorageError(
                    f"{storage!r}.read_many returned {len(blobs)} entries for {len(chunk)} keys"
                )
            found.extend(blobs)
        return found
    blobs = cast("list[Blob | None]", [None] * len(wanted))
    pending = iter(enumerate(wanted))

    async def reader() -> None:
        for index, key in pending:
            blobs[index] = await storage.read(key)

    if wanted:
        await run_all([reader] * max(1, min(concurrency, len(wanted))))
    return blobs


async def delete_many(storage: Storage, keys: Sequence[str], *, concurrency: int = 16) -> None:
    """Delete ``keys``: the storage's ``delete_many`` if declared, else concurrent ``delete``."""
    names = list(keys)
    if not names:
        return
    batch = Capabilities.of(storage).delete_many
    if batch is not None:
        await batch(names)
        return
    pending = iter(names)

    async def deleter() -> None:
        for name in pending:
            await storage.delete(name)

    await run_all([deleter] * max(1, min(concurrency, len(names))))


async def list_children(storage: Storage, prefix: str) -> AsyncIterator[str]:
    """The next path segments under ``prefix``: the backend's own listing, else from ``list``.

    ``asyncflow list`` finds workflow ids this way: one delimiter listing
    instead of every record of every workflow. Without the capability the
    same answer is derived from ``list(prefix)``, which reads every key.
    """
    check_children_prefix(prefix)
    own = Capabilities.of(storage).list_children
    if own is not None:
        async for segment in own(prefix):
            yield segment
        return
    last = None
    async for key in storage.list(prefix):
        head, sep, _ = key[len(prefix) :].partition("/")
        segment = head + sep
        if segment != last:
            last = segment
            yield segment


async def list_versions(storage: Storage, prefix: str) -> dict[str, str] | None:
    """Every key under ``prefix`` with its version token, or ``None`` without the capability.

    ``None`` is the answer a caller must handle: without tokens nothing
    proves that a packed copy is still its record, so every record is read.
    """
    own = Capabilities.of(storage).list_versions
    if own is None:
        return None
    found: dict[str, str] = {}
    async for key, token in own(prefix):
        if not isinstance(key, str) or not isinstance(token, str) or not token:
            raise StorageError(
                f"{storage!r}.list_versions({prefix!r}) gave {(key, token)!r},"
                " not a key and a non-empty token"
            )
        found[key] = token
    return found
