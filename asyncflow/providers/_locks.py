"""``StorageFile``'s lock files: one ``flock`` per key for conditional writes, removed when idle.

A conditional write (a lease) holds an exclusive ``flock`` on ``.{name}.lock``
beside the record, so two processes cannot both win. ``tidy`` removes the
lock files of deleted records (and empty folders) only while holding their
lock; a locker that opened the file before it was removed notices (the inode
changed) and takes the current one.
"""

from __future__ import annotations

import os
import sys

from asyncflow._kernel.errors import StorageError
from asyncflow.providers._fs import CLOEXEC, NOFOLLOW, Refused, open_dir

__all__ = ["FileLock", "tidy_dir"]

if sys.platform != "win32":
    import fcntl


def tidy_dir(parent: int, name: str, path: str) -> int:
    """Under ``name`` in ``parent``: idle lock files of missing records, then empty dirs."""
    try:
        fd = open_dir(parent, name, path)
    except FileNotFoundError:
        return 0
    except Refused:
        return 0  # not a directory of ours (a symlink, a file): left alone
    removed = 0
    try:
        with os.scandir(fd) as scan:
            entries = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
        names = {entry for entry, _ in entries}
        for entry, is_dir in entries:
            if is_dir:
                removed += tidy_dir(fd, entry, os.path.join(path, entry))
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
        fd = os.open(name, os.O_RDWR | NOFOLLOW | CLOEXEC, dir_fd=parent)
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


class FileLock:
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
                self.name, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644, dir_fd=self.parent
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
