"""``StorageFile``: durable checkpoints in a local directory.

The filesystem work lives beside it: ``_fs`` (walking below the root without
following anything, reading records), ``_atomic`` (temp file, fsync,
rename; group commit) and ``_locks`` (the lock files of conditional writes).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio.to_thread

from asyncflow._kernel.errors import ConfigurationError, PreconditionFailed, StorageError
from asyncflow._kernel.ids import validate_storage_key
from asyncflow._kernel.storage import Blob, ClosingStorage, check_children_prefix
from asyncflow._kernel.writer import SharedWriter, WriterSession
from asyncflow.providers._atomic import replace, write_group
from asyncflow.providers._fs import Refused, Root, fsync_dir, read_at, storage_error, version
from asyncflow.providers._locks import FileLock, tidy_dir

__all__ = ["StorageFile"]


@functools.lru_cache(maxsize=64)
def _lead(root: str) -> str:
    """What goes before a relative path under ``root``, as ``Path.joinpath`` would join it.

    Cached: ``os.path.join`` per key was most of the cost of mapping a key.
    """
    return "" if root == "." else os.path.join(root, "")


class StorageFile(ClosingStorage):
    """One file per record under ``path``, written so a crash never tears one.

    A write goes to a hidden temp file in the same directory, is fsynced,
    renamed over the target with ``os.replace`` (atomic on POSIX) and the
    directory is fsynced, so after ``write`` returns the record survives a
    power cut and a reader only ever sees a whole old or a whole new file.
    Conditional writes hold an ``flock`` on a per-key lock file, so two
    processes cannot both win. Every blocking call of one operation runs in a
    single worker-thread hop (measured faster than aiofiles, which pays a hop
    per call and does not run on trio; see ``docs/benchmarks.md``); the
    engine's task records go instead through ``background_writer()``, one
    long-lived thread that wakes the event loop only when a task waits.

    Containment: ``path`` itself is the user's choice (it may be a symlink);
    everything below it is untrusted. Every operation walks the key's
    directories one by one relative to an open directory (``O_NOFOLLOW``,
    ``dir_fd``), so a symlink planted anywhere below the root is refused with
    ``StorageError`` naming it, never followed; a directory, FIFO, socket or
    device where a record should be is refused the same way (a FIFO is
    opened non-blocking, so a read never hangs).

    ``durable=False`` skips the fsyncs: still atomic against a process crash,
    not against a power cut.
    """

    persistent = True

    def __init__(
        self, path: str | os.PathLike[str] = ".asyncflow", *, durable: bool = True
    ) -> None:
        if not {os.open, os.mkdir, os.rename, os.unlink} <= os.supports_dir_fd:
            raise ConfigurationError(
                "StorageFile needs a POSIX system (directory-relative file calls keep it"
                " inside its root); on Windows use WSL"
            )
        self.path = Path(path)
        self.durable = durable
        self._root = Root(os.fspath(self.path))
        self._writer = SharedWriter(self._write_one, self._write_group, f"asyncflow-writer {path}")

    def background_writer(self) -> contextlib.AbstractAsyncContextManager[WriterSession] | None:
        """A session on this storage's writer thread, for the engine's record commits.

        One long-lived thread per storage (started by the first run, ended
        with the last) writes the records queued by the runs, in order;
        the event loop is woken only when a task waits for one (see
        ``asyncflow._kernel.writer``). ``None`` when a subclass overrides
        ``write`` or ``write_many``: every record must go through them then.
        """
        cls = type(self)
        if cls.write is not StorageFile.write or cls.write_many is not StorageFile.write_many:
            return None
        return self._writer.session()

    def _write_one(self, key: str, data: bytes) -> None:
        self._write_sync(key, self._file(key), data, False, None)

    def _write_group(self, items: Sequence[tuple[str, bytes]]) -> None:
        write_group(
            self._root, [(key, self._file(key), data) for key, data in items], durable=self.durable
        )

    def _target(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """The file of ``key`` as a string (for messages), the key validated once."""
        rel = validate_storage_key(key)
        if os.sep != "/":
            rel = rel.replace("/", os.sep)
        return _lead(self._root.path) + rel

    async def read(self, key: str) -> Blob | None:
        target = self._file(key)
        return (await anyio.to_thread.run_sync(self._read_many_sync, [(key, target)]))[0]

    def _read_one(self, key: str, target: str, parents: dict[str, int]) -> Blob | None:
        head, _, name = key.rpartition("/")
        try:
            parent = parents.get(head)
            if parent is None:
                parent = self._root.parent(head.split("/") if head else [], create=False)
                parents[head] = parent
            data = read_at(parent, name, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error("read", key, target, exc) from exc
        return Blob(data, version(data))

    async def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_version: str | None = None,
    ) -> str:
        target = self._file(key)
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        return await anyio.to_thread.run_sync(
            self._write_sync, key, target, data, if_absent, if_version
        )

    def _write_sync(
        self, key: str, target: str, data: bytes, if_absent: bool, if_version: str | None
    ) -> str:
        head, _, name = key.rpartition("/")
        try:
            parent = self._root.parent(head.split("/") if head else [], create=True)
            try:
                if not (if_absent or if_version is not None):
                    replace(parent, name, data, durable=self.durable)
                    return version(data)
                with FileLock(parent, f".{name}.lock"):
                    try:
                        current: bytes | None = read_at(parent, name, target)
                    except FileNotFoundError:
                        current = None
                    if if_absent and current is not None:
                        raise PreconditionFailed(f"{key} already exists")
                    if if_version is not None and (
                        current is None or version(current) != if_version
                    ):
                        raise PreconditionFailed(f"{key} is not at version {if_version}")
                    replace(parent, name, data, durable=self.durable)
                    return version(data)
            finally:
                os.close(parent)
        except StorageError:
            raise
        except OSError as exc:
            raise storage_error("write", key, target, exc) from exc

    async def write_many(self, items: builtins.list[tuple[str, bytes]]) -> builtins.list[str]:
        """Write several records in one thread hop, sharing the flushes (group commit).

        The ``write_many`` capability (the engine's ``"batch"`` durability
        uses it): one ``syncfs`` on Linux for all the data, then the renames
        in order, then one fsync per directory (``_atomic.write_group``).
        Each record is still atomic and durable before it is visible under
        its name; after this returns all of them are durable. A crash midway
        leaves some records old and some new, never a torn one.
        """
        targets = [(key, self._file(key), data) for key, data in items]
        for _, _, data in targets:
            if not isinstance(data, bytes):
                raise TypeError(f"data must be bytes, got {type(data).__name__}")
        return await anyio.to_thread.run_sync(
            functools.partial(write_group, self._root, targets, durable=self.durable)
        )

    async def read_many(self, keys: builtins.list[str]) -> builtins.list[Blob | None]:
        """Read several records in one thread hop (the ``read_many`` capability).

        Local reads are cheap; paying one thread hop per record was most of a
        resume's cost. Each directory is walked once per call.
        """
        targets = [(key, self._file(key)) for key in keys]
        return await anyio.to_thread.run_sync(self._read_many_sync, targets)

    def _read_many_sync(
        self, targets: builtins.list[tuple[str, str]]
    ) -> builtins.list[Blob | None]:
        parents: dict[str, int] = {}
        try:
            return [self._read_one(key, target, parents) for key, target in targets]
        finally:
            for parent in parents.values():
                os.close(parent)

    async def delete(self, key: str) -> None:
        target = self._file(key)
        await anyio.to_thread.run_sync(self._delete_sync, key, target)

    def _delete_sync(self, key: str, target: str) -> None:
        head, _, name = key.rpartition("/")
        try:
            parent = self._root.parent(head.split("/") if head else [], create=False)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error("delete", key, target, exc) from exc
        try:
            os.unlink(name, dir_fd=parent)
            if self.durable:
                fsync_dir(parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error("delete", key, target, exc) from exc
        finally:
            os.close(parent)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        keys = await anyio.to_thread.run_sync(self._list_sync, prefix, False)
        for key, _ in keys:
            yield key

    async def list_versions(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        """``list`` with each file's listing token (the ``list_versions`` capability).

        One ``lstat`` per file, no read: inode, size and the modification
        time that every write sets to the nanosecond (``_fs.listing_token``).
        """
        found = await anyio.to_thread.run_sync(self._list_sync, prefix, True)
        for item in found:
            yield item

    def _list_sync(self, prefix: str, versions: bool) -> builtins.list[tuple[str, str]]:
        head = prefix.rpartition("/")[0]
        base = self._file(head) if head else self._root.path
        try:
            try:
                fd = self._root.parent(head.split("/") if head else [], create=False)
            except FileNotFoundError:
                return []
            except Refused as exc:
                if exc.found != "a regular file":
                    raise
                return []  # a record's name used as a directory: nothing under it
            try:
                if versions:
                    entries = self._root.walk_versions(fd, head, base)
                else:
                    entries = ((key, "") for key in self._root.walk(fd, head, base))
                found = sorted(item for item in entries if item[0].startswith(prefix))
            finally:
                os.close(fd)
        except OSError as exc:
            raise storage_error("list", prefix, base, exc) from exc
        return found

    async def list_children(self, prefix: str) -> AsyncIterator[str]:
        """One directory scan: ``name/`` per sub-directory, ``name`` per anything else.

        ``list_children("")`` is the workflow ids: what a worker's scan and
        ``asyncflow list`` read, at a cost that grows with the workflows, not
        with their records. Opened like ``list``: relative to the root's fd,
        never through a symlink; a symlink among the names is not a directory
        of ours and is given as a leaf (a key), never as ``name/``.
        """
        if check_children_prefix(prefix):
            validate_storage_key(prefix + "_")  # "/" names no folder: refused, as by S3
        segments = await anyio.to_thread.run_sync(self._children_sync, prefix)
        for segment in segments:
            yield segment

    def _children_sync(self, prefix: str) -> builtins.list[str]:
        head = prefix[:-1]
        base = self._file(head) if head else self._root.path
        try:
            try:
                fd = self._root.parent(head.split("/") if head else [], create=False)
            except FileNotFoundError:
                return []
            except Refused as exc:
                if exc.found != "a regular file":
                    raise
                return []
            try:
                with os.scandir(fd) as scan:
                    found = [
                        entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name
                        for entry in scan
                        if not entry.name.startswith(".")
                    ]
            finally:
                os.close(fd)
        except OSError as exc:
            raise storage_error("list", prefix, base, exc) from exc
        return sorted(found)

    async def tidy(self, prefix: str) -> int:
        """Remove the lock files of deleted records and the empty folders under ``prefix``.

        ``asyncflow clear`` calls it after deleting a workflow, so nothing of
        it is left behind. A lock file is removed only while this process
        holds its lock and its record is gone (a locker that opened it before
        the removal notices and retries, see ``_locks.FileLock``); a folder only
        when empty; nothing is followed through a symlink. Returns how many
        entries were removed.
        """
        return await anyio.to_thread.run_sync(self._tidy_sync, prefix)

    def _tidy_sync(self, prefix: str) -> int:
        head = prefix.rstrip("/")
        if not head:
            raise ConfigurationError("tidy needs a workflow prefix, not the storage root")
        base = self._file(head)
        *above, name = head.split("/")
        try:
            try:
                parent = self._root.parent(above, create=False)
            except FileNotFoundError:
                return 0
            try:
                return tidy_dir(parent, name, base)
            finally:
                os.close(parent)
        except OSError as exc:
            raise storage_error("tidy", prefix, base, exc) from exc

    async def aclose(self) -> None:
        self._writer.stop()

    def __repr__(self) -> str:
        return f"StorageFile({str(self.path)!r})"
