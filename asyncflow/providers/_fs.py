"""Below ``StorageFile``'s root without following anything: open directories, read records.

``path`` itself is the user's choice (it may be a symlink); everything below
it is untrusted. Every operation walks a key's directories one by one
relative to an open directory (``O_NOFOLLOW``, ``dir_fd``), so a symlink
planted below the root is refused (``Refused``) naming it, never followed;
a directory, FIFO, socket or device where a record should be is refused the
same way (a FIFO is opened non-blocking, so a read never hangs).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import functools
import hashlib
import os
import stat
import sys
from collections.abc import Callable, Iterator

from asyncflow._kernel.errors import StorageError

__all__ = [
    "CLOEXEC",
    "NOFOLLOW",
    "TEMP_FLAGS",
    "Refused",
    "Root",
    "flush_filesystem",
    "fsync_dir",
    "has_syncfs",
    "listing_token",
    "open_dir",
    "read_at",
    "storage_error",
    "version",
]


def version(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def listing_token(info: os.stat_result) -> str:
    """What a listing tells of a file's version: its inode, size and modification time.

    A write replaces the file by a new inode (temp file and rename) whose
    modification time the writer sets to the nanosecond (``_atomic.stage``),
    so another write gives another token, even one of bytes of the same
    length, however soon after.
    """
    return f"{info.st_ino:x}.{info.st_size:x}.{info.st_mtime_ns:x}"


_READ_CHUNK = 1 << 16
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | NOFOLLOW | CLOEXEC
#: O_NONBLOCK: opening a FIFO or a device where a record should be must not hang
_READ_FLAGS = os.O_RDONLY | NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | CLOEXEC
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC


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


class Refused(OSError):
    """Something other than what the layout needs sits at a path: never followed, never read."""

    found = ""


def _refuse(parent: int, name: str, path: str, wanted: str) -> Refused:
    try:
        found = _kind(os.lstat(name, dir_fd=parent).st_mode)
    except OSError:
        found = "not usable"
    refused = Refused(
        errno.ENOTDIR, f"{path} is {found}, not {wanted}; asyncflow does not follow it"
    )
    refused.found = found
    return refused


def open_dir(parent: int, name: str, path: str) -> int:
    """``name`` in ``parent`` as a directory fd; a symlink or anything else is ``Refused``."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise _refuse(parent, name, path, "a directory") from None
        raise


def read_at(parent: int, name: str, path: str) -> bytes:
    """The whole regular file ``name`` in ``parent``; anything else is ``Refused``.

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
            raise Refused(
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
    except Refused:
        raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(fd)
    return data


def storage_error(op: str, key: str, path: str, exc: OSError) -> StorageError:
    if isinstance(exc, Refused):
        return StorageError(f"file storage cannot {op} {key!r}: {exc.strerror}")
    return StorageError(f"file storage cannot {op} {key!r} at {path}: {exc}")


class Root:
    """The storage's root directory, and the directories below it opened one by one."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self, create: bool) -> int:
        """The root directory, opened (following the user's own symlink, if the root is one)."""
        root = self.path or "."
        try:
            return os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise
        os.makedirs(root, exist_ok=True)
        return os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | CLOEXEC)

    def parent(self, segments: builtins.list[str], create: bool) -> int:
        """An fd of the directory ``segments`` below the root, never through a symlink.

        ``create``: missing directories are made (``mkdir`` relative to
        their parent's fd); otherwise a missing one is ``FileNotFoundError``.
        """
        fd = self.open(create)
        path = self.path
        try:
            for segment in segments:
                path = os.path.join(path, segment)
                try:
                    child = open_dir(fd, segment, path)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(segment, 0o777, dir_fd=fd)
                    child = open_dir(fd, segment, path)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def walk(self, fd: int, rel: str, path: str) -> Iterator[str]:
        """Keys under the open directory ``fd``; its subdirectories are opened without following.

        Anything that is not a directory is a key, symlinks, FIFOs and
        sockets included: a record path taken by one of them must be read,
        and refused, not skipped as if there were no checkpoint.
        """
        for key, _ in self._entries(fd, rel, path, versions=False):
            yield key

    def walk_versions(self, fd: int, rel: str, path: str) -> Iterator[tuple[str, str]]:
        """``walk`` with each key's listing token (``listing_token``), one ``lstat`` each."""
        return self._entries(fd, rel, path, versions=True)

    def _entries(
        self, fd: int, rel: str, path: str, *, versions: bool
    ) -> Iterator[tuple[str, str]]:
        lead = f"{rel}/" if rel else ""
        found: builtins.list[tuple[str, bool, str]] = []
        with os.scandir(fd) as scan:
            for entry in scan:
                if entry.name.startswith("."):
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
                token = ""
                if versions and not is_dir:
                    try:
                        token = listing_token(entry.stat(follow_symlinks=False))
                    except FileNotFoundError:
                        continue  # deleted since the scan
                found.append((entry.name, is_dir, token))
        for name, is_dir, token in found:
            if not is_dir:
                yield lead + name, token
                continue
            child_path = os.path.join(path, name)
            try:
                child = open_dir(fd, name, child_path)
            except FileNotFoundError:
                continue  # deleted since the scan
            try:
                yield from self._entries(child, lead + name, child_path, versions=versions)
            finally:
                os.close(child)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """Linux ``syncfs(2)``: one flush for a whole batch instead of one fsync per file.

    Loaded on the first batch, not at import: ctypes and libc cost more
    than the rest of the file backend's import.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


def has_syncfs() -> bool:
    """Whether one ``syncfs`` can make a batch durable (else: one fsync per file)."""
    return _syncfs() is not None


def flush_filesystem(directory: int) -> None:
    syncfs = _syncfs()
    assert syncfs is not None
    if syncfs(directory) != 0:
        import ctypes

        error = ctypes.get_errno()
        raise OSError(error, f"syncfs failed: {os.strerror(error)}")


def fsync_dir(directory: int) -> None:
    if sys.platform == "win32":
        return
    try:
        os.fsync(directory)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
