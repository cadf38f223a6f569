"""``StorageFile``: durable checkpoints in a local directory."""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import anyio.to_thread

from asyncflow._core.errors import ConfigurationError, PreconditionFailed, StorageError
from asyncflow._core.ids import validate_storage_key
from asyncflow._core.storage import Blob, ClosingStorage, check_children_prefix
from asyncflow._core.writer import SharedWriter, WriterSession

__all__ = ["StorageFile"]

if sys.platform != "win32":
    import fcntl


def _version(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@functools.lru_cache(maxsize=64)
def _lead(root: str) -> str:
    """What goes before a relative path under ``root``, as ``Path.joinpath`` would join it.

    Cached: ``os.path.join`` per key was most of the cost of mapping a key.
    """
    return "" if root == "." else os.path.join(root, "")


_READ_CHUNK = 1 << 16
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
#: O_NONBLOCK: opening a FIFO or a device where a record should be must not hang
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "not a regular file"


class _Refused(OSError):
    """Something other than what the layout needs sits at a path: never followed, never read."""

    found = ""


def _refuse(parent: int, name: str, path: str, wanted: str) -> _Refused:
    try:
        found = _kind(os.lstat(name, dir_fd=parent).st_mode)
    except OSError:
        found = "not usable"
    refused = _Refused(
        errno.ENOTDIR, f"{path} is {found}, not {wanted}; asyncflow does not follow it"
    )
    refused.found = found
    return refused


def _open_dir(parent: int, name: str, path: str) -> int:
    """``name`` in ``parent`` as a directory fd; a symlink or anything else is ``_Refused``."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise _refuse(parent, name, path, "a directory") from None
        raise


def _read_at(parent: int, name: str, path: str) -> bytes:
    """The whole regular file ``name`` in ``parent``; anything else is ``_Refused``.

    Raw ``os`` calls: ``open()`` builds a buffered file object per call,
    which cost more than reading a small record.
    """
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(parent, name, path, "a regular file") from None
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(
                errno.EINVAL, f"{path} is {_kind(info.st_mode)}, not a regular file: not a record"
            )
        size = info.st_size
        data = os.read(fd, size + 1 if size < _READ_CHUNK else _READ_CHUNK)
        if len(data) == size:
            # As large as fstat said and no byte beyond it: the whole file
            # without a read that only confirms the end (a syscall per record).
            return data
        more = os.read(fd, _READ_CHUNK) if data else b""
        if more:
            chunks = [data, more]
            while more := os.read(fd, _READ_CHUNK):
                chunks.append(more)
            data = b"".join(chunks)
    except _Refused:
        raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(fd)
    return data


def _storage_error(op: str, key: str, path: str, exc: OSError) -> StorageError:
    if isinstance(exc, _Refused):
        return StorageError(f"file storage cannot {op} {key!r}: {exc.strerror}")
    return StorageError(f"file storage cannot {op} {key!r} at {path}: {exc}")


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
        self._writer = SharedWriter(self._write_one, self._write_group, f"asyncflow-writer {path}")

    def background_writer(self) -> contextlib.AbstractAsyncContextManager[WriterSession] | None:
        """A session on this storage's writer thread, for the engine's record commits.

        One long-lived thread per storage (started by the first run, ended
        with the last) writes the records queued by the runs, in order;
        the event loop is woken only when a task waits for one (see
        ``asyncflow._core.writer``). ``None`` when a subclass overrides
        ``write`` or ``write_many``: every record must go through them then.
        """
        cls = type(self)
        if cls.write is not StorageFile.write or cls.write_many is not StorageFile.write_many:
            return None
        return self._writer.session()

    def _write_one(self, key: str, data: bytes) -> None:
        self._write_sync(key, self._file(key), data, False, None)

    def _write_group(self, items: Sequence[tuple[str, bytes]]) -> None:
        self._write_many_sync([(key, self._file(key), data) for key, data in items])

    def _target(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """The file of ``key`` as a string (for messages), the key validated once."""
        rel = validate_storage_key(key)
        if os.sep != "/":
            rel = rel.replace("/", os.sep)
        return _lead(os.fspath(self.path)) + rel

    def _root(self, create: bool) -> int:
        """The root directory, opened (following the user's own symlink, if the root is one)."""
        root = os.fspath(self.path) or "."
        try:
            return os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise
        os.makedirs(root, exist_ok=True)
        return os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)

    def _parent(self, segments: builtins.list[str], create: bool) -> int:
        """An fd of the directory ``segments`` below the root, never through a symlink.

        ``create``: missing directories are made (``mkdir`` relative to
        their parent's fd); otherwise a missing one is ``FileNotFoundError``.
        """
        fd = self._root(create)
        path = os.fspath(self.path)
        try:
            for segment in segments:
                path = os.path.join(path, segment)
                try:
                    child = _open_dir(fd, segment, path)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(segment, 0o777, dir_fd=fd)
                    child = _open_dir(fd, segment, path)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    async def read(self, key: str) -> Blob | None:
        target = self._file(key)
        return (await anyio.to_thread.run_sync(self._read_many_sync, [(key, target)]))[0]

    def _read_one(self, key: str, target: str, parents: dict[str, int]) -> Blob | None:
        head, _, name = key.rpartition("/")
        try:
            parent = parents.get(head)
            if parent is None:
                parent = self._parent(head.split("/") if head else [], create=False)
                parents[head] = parent
            data = _read_at(parent, name, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _storage_error("read", key, target, exc) from exc
        return Blob(data, _version(data))

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
            parent = self._parent(head.split("/") if head else [], create=True)
            try:
                if not (if_absent or if_version is not None):
                    self._replace(parent, name, data)
                    return _version(data)
                with _FileLock(parent, f".{name}.lock"):
                    try:
                        current: bytes | None = _read_at(parent, name, target)
                    except FileNotFoundError:
                        current = None
                    if if_absent and current is not None:
                        raise PreconditionFailed(f"{key} already exists")
                    if if_version is not None and (
                        current is None or _version(current) != if_version
                    ):
                        raise PreconditionFailed(f"{key} is not at version {if_version}")
                    self._replace(parent, name, data)
                    return _version(data)
            finally:
                os.close(parent)
        except StorageError:
            raise
        except OSError as exc:
            raise _storage_error("write", key, target, exc) from exc

    def _replace(self, parent: int, name: str, data: bytes) -> None:
        tmp = self._stage(parent, name, data)
        try:
            os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)
            raise
        if self.durable:
            _fsync_dir(parent)

    async def write_many(self, items: builtins.list[tuple[str, bytes]]) -> builtins.list[str]:
        """Write several records in one thread hop, sharing the flushes (group commit).

        Optional (the engine's ``"batch"`` durability uses it when present):
        every temp file is written, their data is made durable together (one
        ``syncfs`` of the filesystem on Linux; one fsync per file elsewhere),
        then all are renamed in order, then each directory involved is fsynced
        once. Each record is still atomic and durable before it is visible
        under its name; after this returns all of them are durable. A crash
        midway leaves some records old and some new, never a torn one.
        """
        targets = [(key, self._file(key), data) for key, data in items]
        for _, _, data in targets:
            if not isinstance(data, bytes):
                raise TypeError(f"data must be bytes, got {type(data).__name__}")
        return await anyio.to_thread.run_sync(self._write_many_sync, targets)

    def _write_many_sync(
        self, targets: builtins.list[tuple[str, str, bytes]]
    ) -> builtins.list[str]:
        parents: dict[str, int] = {}
        staged: builtins.list[tuple[int, str, str, str, str]] = []
        try:
            try:
                for key, target, data in targets:
                    head, _, name = key.rpartition("/")
                    try:
                        parent = parents.get(head)
                        if parent is None:
                            parent = self._parent(head.split("/") if head else [], create=True)
                            parents[head] = parent
                        tmp = self._stage(parent, name, data, fsync=_syncfs is None)
                    except OSError as exc:
                        raise _storage_error("write", key, target, exc) from exc
                    staged.append((parent, tmp, name, key, target))
                if self.durable and _syncfs is not None and staged:
                    try:
                        _flush_filesystem(staged[0][0])
                    except OSError as exc:
                        key, target = staged[0][3], staged[0][4]
                        raise _storage_error("write", key, target, exc) from exc
                while staged:
                    parent, tmp, name, key, target = staged[0]
                    try:
                        os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                    except OSError as exc:
                        raise _storage_error("write", key, target, exc) from exc
                    staged.pop(0)
            except BaseException:
                for parent, tmp, *_ in staged:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=parent)
                raise
            if self.durable:
                for head, parent in parents.items():
                    try:
                        _fsync_dir(parent)
                    except OSError as exc:
                        where = os.path.join(os.fspath(self.path), head)
                        raise StorageError(
                            f"file storage cannot make the writes in {where} durable: {exc}"
                        ) from exc
        finally:
            for parent in parents.values():
                os.close(parent)
        return [_version(data) for _, _, data in targets]

    def _stage(self, parent: int, name: str, data: bytes, *, fsync: bool = True) -> str:
        """Write ``data`` to a fresh temp file beside ``name`` (fsynced if durable)."""
        tmp = f".{name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, _TEMP_FLAGS, 0o644, dir_fd=parent)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable and fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise
        return tmp

    async def read_many(self, keys: builtins.list[str]) -> builtins.list[Blob | None]:
        """Read several records in one thread hop (optional; used by resume).

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
            parent = self._parent(head.split("/") if head else [], create=False)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _storage_error("delete", key, target, exc) from exc
        try:
            os.unlink(name, dir_fd=parent)
            if self.durable:
                _fsync_dir(parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _storage_error("delete", key, target, exc) from exc
        finally:
            os.close(parent)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        keys = await anyio.to_thread.run_sync(self._list_sync, prefix)
        for key in keys:
            yield key

    def _list_sync(self, prefix: str) -> builtins.list[str]:
        head = prefix.rpartition("/")[0]
        base = self._file(head) if head else os.fspath(self.path)
        try:
            try:
                fd = self._parent(head.split("/") if head else [], create=False)
            except FileNotFoundError:
                return []
            except _Refused as exc:
                if exc.found != "a regular file":
                    raise
                return []  # a record's name used as a directory: nothing under it
            try:
                found = sorted(k for k in self._walk(fd, head, base) if k.startswith(prefix))
            finally:
                os.close(fd)
        except OSError as exc:
            raise _storage_error("list", prefix, base, exc) from exc
        return found

    async def list_children(self, prefix: str) -> AsyncIterator[str]:
        """One directory scan: ``name/`` per sub-directory, ``name`` per anything else.

        ``list_children("")`` is the workflow ids: what a worker's scan and
        ``asyncflow list`` read, at a cost that grows with the workflows, not
        with their records. Opened like ``list``: relative to the root's fd,
        never through a symlink; a symlink among the names is not a directory
        of ours and is given as a leaf (a key), never as ``name/``.
        """
        check_children_prefix(prefix)
        segments = await anyio.to_thread.run_sync(self._children_sync, prefix)
        for segment in segments:
            yield segment

    def _children_sync(self, prefix: str) -> builtins.list[str]:
        head = prefix[:-1]
        base = self._file(head) if head else os.fspath(self.path)
        try:
            try:
                fd = self._parent(head.split("/") if head else [], create=False)
            except FileNotFoundError:
                return []
            except _Refused as exc:
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
            raise _storage_error("list", prefix, base, exc) from exc
        return sorted(found)

    async def tidy(self, prefix: str) -> int:
        """Remove the lock files of deleted records and the empty folders under ``prefix``.

        ``asyncflow clear`` calls it after deleting a workflow, so nothing of
        it is left behind. A lock file is removed only while this process
        holds its lock and its record is gone (a locker that opened it before
        the removal notices and retries, see ``_FileLock``); a folder only
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
                parent = self._parent(above, create=False)
            except FileNotFoundError:
                return 0
            try:
                return _tidy_dir(parent, name, base)
            finally:
                os.close(parent)
        except OSError as exc:
            raise _storage_error("tidy", prefix, base, exc) from exc

    def _walk(self, fd: int, rel: str, path: str) -> Iterator[str]:
        """Keys under the open directory ``fd``; its subdirectories are opened without following.

        Anything that is not a directory is a key, symlinks, FIFOs and
        sockets included: a record path taken by one of them must be read,
        and refused, not skipped as if there were no checkpoint.
        """
        lead = f"{rel}/" if rel else ""
        with os.scandir(fd) as scan:
            entries = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
        for name, is_dir in entries:
            if name.startswith("."):
                continue
            if not is_dir:
                yield lead + name
                continue
            child_path = os.path.join(path, name)
            try:
                child = _open_dir(fd, name, child_path)
            except FileNotFoundError:
                continue  # deleted since the scan
            try:
                yield from self._walk(child, lead + name, child_path)
            finally:
                os.close(child)

    async def aclose(self) -> None:
        self._writer.stop()

    def __repr__(self) -> str:
        return f"StorageFile({str(self.path)!r})"


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux ``syncfs(2)``: one flush for a whole batch instead of one fsync per file."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


_syncfs = _load_syncfs()


def _flush_filesystem(directory: int) -> None:
    assert _syncfs is not None
    if _syncfs(directory) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"syncfs failed: {os.strerror(error)}")


def _fsync_dir(directory: int) -> None:
    if sys.platform == "win32":
        return
    try:
        os.fsync(directory)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise


def _tidy_dir(parent: int, name: str, path: str) -> int:
    """Under ``name`` in ``parent``: idle lock files of missing records, then empty dirs."""
    try:
        fd = _open_dir(parent, name, path)
    except FileNotFoundError:
        return 0
    except _Refused:
        return 0  # not a directory of ours (a symlink, a file): left alone
    removed = 0
    try:
        with os.scandir(fd) as scan:
            entries = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
        names = {entry for entry, _ in entries}
        for entry, is_dir in entries:
            if is_dir:
                removed += _tidy_dir(fd, entry, os.path.join(path, entry))
            elif entry.startswith(".") and entry.endswith(".lock"):
                record = entry[1 : -len(".lock")]
                if record not in names and _unlink_idle_lock(fd, entry):
                    removed += 1
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent)
        removed += 1
    except OSError:
        pass  # not empty (a record, a temp file, a foreign file): kept
    return removed


def _unlink_idle_lock(parent: int, name: str) -> bool:
    """Unlink a lock file nobody holds, holding it meanwhile; False if it is busy."""
    try:
        fd = os.open(name, os.O_RDWR | _NOFOLLOW | _CLOEXEC, dir_fd=parent)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    try:
        os.unlink(name, dir_fd=parent)
        return True
    except OSError:
        return False
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class _FileLock:
    """An exclusive ``flock`` held across processes for one conditional write."""

    def __init__(self, parent: int, name: str) -> None:
        self.parent = parent
        self.name = name
        self.fd = -1

    def __enter__(self) -> None:
        if sys.platform == "win32":
            raise StorageError(
                "StorageFile conditional writes (leases) need POSIX flock; use WSL on Windows"
            )
        while True:
            self.fd = os.open(
                self.name, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644, dir_fd=self.parent
            )
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
                # ``tidy`` may have removed the file between open and flock: a lock
                # on an unlinked file excludes nobody, so take the current one.
                try:
                    current = os.stat(self.name, dir_fd=self.parent, follow_symlinks=False)
                    if current.st_ino == os.fstat(self.fd).st_ino:
                        return
                except FileNotFoundError:
                    pass
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            except BaseException:
                os.close(self.fd)
                raise
            os.close(self.fd)

    def __exit__(self, *exc: object) -> None:
        if sys.platform != "win32":
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
