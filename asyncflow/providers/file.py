"""``StorageFile``: durable checkpoints in a local directory."""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio.to_thread

from asyncflow._core.errors import PreconditionFailed, StorageError
from asyncflow._core.ids import validate_storage_key
from asyncflow._core.storage import Blob, ClosingStorage

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


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_READ_CHUNK = 1 << 16


def _read_file(path: str) -> bytes:
    """A whole file through raw ``os`` calls.

    ``open()`` builds a buffered file object per call, which cost more than
    reading a small record. A read error names the file, as ``open()``'s do.
    """
    fd = os.open(path, _READ_FLAGS)
    try:
        data = os.read(fd, _READ_CHUNK)
        more = os.read(fd, _READ_CHUNK) if data else b""
        if more:
            chunks = [data, more]
            while more := os.read(fd, _READ_CHUNK):
                chunks.append(more)
            data = b"".join(chunks)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(fd)
    return data


class StorageFile(ClosingStorage):
    """One file per record under ``path``, written so a crash never tears one.

    A write goes to a hidden temp file in the same directory, is fsynced,
    renamed over the target with ``os.replace`` (atomic on POSIX) and the
    directory is fsynced, so after ``write`` returns the record survives a
    power cut and a reader only ever sees a whole old or a whole new file.
    Conditional writes hold an ``flock`` on a per-key lock file, so two
    processes cannot both win. Every blocking call of one operation runs in a
    single worker-thread hop (measured faster than aiofiles, which pays a hop
    per call and does not run on trio; see ``docs/benchmarks.md``).

    ``durable=False`` skips the fsyncs: still atomic against a process crash,
    not against a power cut.
    """

    persistent = True

    def __init__(
        self, path: str | os.PathLike[str] = ".asyncflow", *, durable: bool = True
    ) -> None:
        self.path = Path(path)
        self.durable = durable

    def _target(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """The file of ``key`` as a string, the key validated once.

        ``pathlib`` joins cost more than reading a small record, and resume
        maps every key; the key's segments are already checked safe, so a
        string join is the same path.
        """
        rel = validate_storage_key(key)
        if os.sep != "/":
            rel = rel.replace("/", os.sep)
        return _lead(os.fspath(self.path)) + rel

    async def read(self, key: str) -> Blob | None:
        target = self._file(key)
        return await anyio.to_thread.run_sync(self._read_sync, key, target)

    def _read_sync(self, key: str, target: str) -> Blob | None:
        try:
            data = _read_file(target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"file storage cannot read {key!r} at {target}: {exc}") from exc
        return Blob(data, _version(data))

    async def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_version: str | None = None,
    ) -> str:
        target = self._target(key)
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        return await anyio.to_thread.run_sync(
            self._write_sync, key, target, data, if_absent, if_version
        )

    def _write_sync(
        self, key: str, target: Path, data: bytes, if_absent: bool, if_version: str | None
    ) -> str:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (if_absent or if_version is not None):
                self._replace(target, data)
                return _version(data)
            with self._locked(target):
                try:
                    current: bytes | None = target.read_bytes()
                except FileNotFoundError:
                    current = None
                if if_absent and current is not None:
                    raise PreconditionFailed(f"{key} already exists")
                if if_version is not None and (current is None or _version(current) != if_version):
                    raise PreconditionFailed(f"{key} is not at version {if_version}")
                self._replace(target, data)
                return _version(data)
        except PreconditionFailed:
            raise
        except OSError as exc:
            raise StorageError(f"file storage cannot write {key!r} at {target}: {exc}") from exc

    def _replace(self, target: Path, data: bytes) -> None:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if self.durable:
            _fsync_dir(target.parent)

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
        targets = [(key, self._target(key), data) for key, data in items]
        for _, _, data in targets:
            if not isinstance(data, bytes):
                raise TypeError(f"data must be bytes, got {type(data).__name__}")
        return await anyio.to_thread.run_sync(self._write_many_sync, targets)

    def _write_many_sync(
        self, targets: builtins.list[tuple[str, Path, bytes]]
    ) -> builtins.list[str]:
        staged: builtins.list[tuple[Path, Path]] = []
        made: set[Path] = set()
        try:
            for key, target, data in targets:
                try:
                    if target.parent not in made:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        made.add(target.parent)
                    staged.append((self._stage(target, data, fsync=_syncfs is None), target))
                except OSError as exc:
                    raise StorageError(
                        f"file storage cannot write {key!r} at {target}: {exc}"
                    ) from exc
            if self.durable and _syncfs is not None and staged:
                _flush_filesystem(staged[0][0].parent)
            for tmp, target in staged:
                os.replace(tmp, target)
        except BaseException:
            for tmp, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise
        if self.durable:
            for directory in dict.fromkeys(target.parent for _, target in staged):
                _fsync_dir(directory)
        return [_version(data) for _, _, data in targets]

    def _stage(self, target: Path, data: bytes, *, fsync: bool = True) -> Path:
        """Write ``data`` to a fresh temp file beside ``target`` (fsynced if durable)."""
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable and fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp

    async def read_many(self, keys: builtins.list[str]) -> builtins.list[Blob | None]:
        """Read several records in one thread hop (optional; used by resume).

        Local reads are cheap; paying one thread hop per record was most of a
        resume's cost.
        """
        targets = [(key, self._file(key)) for key in keys]
        return await anyio.to_thread.run_sync(self._read_many_sync, targets)

    def _read_many_sync(
        self, targets: builtins.list[tuple[str, str]]
    ) -> builtins.list[Blob | None]:
        read = self._read_sync
        return [read(key, target) for key, target in targets]

    def _locked(self, target: Path) -> _FileLock:
        return _FileLock(target.with_name(f".{target.name}.lock"))

    async def delete(self, key: str) -> None:
        target = self._target(key)
        await anyio.to_thread.run_sync(self._delete_sync, key, target)

    def _delete_sync(self, key: str, target: Path) -> None:
        try:
            os.unlink(target)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"file storage cannot delete {key!r} at {target}: {exc}") from exc
        if self.durable:
            _fsync_dir(target.parent)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        keys = await anyio.to_thread.run_sync(self._list_sync, prefix)
        for key in keys:
            yield key

    def _list_sync(self, prefix: str) -> builtins.list[str]:
        head = prefix.rpartition("/")[0]
        base = self._file(head) if head else os.fspath(self.path)
        try:
            found = sorted(k for k in self._walk(base, head) if k.startswith(prefix))
        except OSError as exc:
            raise StorageError(f"file storage cannot list {prefix!r} under {base}: {exc}") from exc
        return found

    def _walk(self, directory: str, rel: str) -> Iterator[str]:
        """Keys under ``directory``; string paths, as a ``Path`` per entry cost more than a scan."""
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        except NotADirectoryError:
            return
        lead = f"{rel}/" if rel else ""
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_file(follow_symlinks=False):
                yield lead + name
            elif entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, lead + name)

    async def aclose(self) -> None:
        return None

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


def _flush_filesystem(directory: Path) -> None:
    assert _syncfs is not None
    fd = os.open(directory, os.O_RDONLY)
    try:
        if _syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs failed: {os.strerror(error)}")
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class _FileLock:
    """An exclusive ``flock`` held across processes for one conditional write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        if sys.platform == "win32":
            raise StorageError(
                "StorageFile conditional writes (leases) need POSIX flock; use WSL on Windows"
            )
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if sys.platform != "win32":
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
