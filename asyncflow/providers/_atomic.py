"""``StorageFile``'s writes: a temp file, fsync, ``os.replace``, fsync of the directory.

A reader only ever sees a whole old or a whole new file, and after a write
returns (``durable=True``) the record survives a power cut. ``write_group``
writes many records sharing the flushes (group commit).
"""

from __future__ import annotations

import builtins
import contextlib
import os
import time

from asyncflow._kernel.errors import StorageError
from asyncflow.providers._fs import (
    TEMP_FLAGS,
    Root,
    flush_filesystem,
    fsync_dir,
    has_syncfs,
    storage_error,
    version,
)

__all__ = ["replace", "stage", "write_group"]


def stage(parent: int, name: str, data: bytes, *, durable: bool, fsync: bool = True) -> str:
    """Write ``data`` to a fresh temp file beside ``name`` (fsynced if durable)."""
    tmp = f".{name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
    try:
        fd = os.open(tmp, TEMP_FLAGS, 0o644, dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            stamp = time.time_ns()  # the nanosecond: what tells this write's listing token apart
            os.utime(fd, ns=(stamp, stamp))
            if durable and fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=parent)
        raise
    return tmp


def replace(parent: int, name: str, data: bytes, *, durable: bool) -> None:
    """``name`` in ``parent`` now holds ``data``, atomically (and durably if ``durable``)."""
    tmp = stage(parent, name, data, durable=durable)
    try:
        os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=parent)
        raise
    if durable:
        fsync_dir(parent)


def write_group(
    root: Root, targets: builtins.list[tuple[str, str, bytes]], *, durable: bool
) -> builtins.list[str]:
    """Write ``(key, path, data)`` records sharing the flushes; returns their versions.

    Every temp file is written, their data is made durable together (one
    ``syncfs`` of the filesystem on Linux; one fsync per file elsewhere),
    then all are renamed in order, then each directory involved is fsynced
    once. Each record is atomic and durable before it is visible under its
    name; a crash midway leaves some records old and some new, never a torn
    one. A failure leaves no temp file behind.
    """
    parents: dict[str, int] = {}
    staged: builtins.list[tuple[int, str, str, str, str]] = []
    try:
        try:
            for key, target, data in targets:
                head, _, name = key.rpartition("/")
                try:
                    parent = parents.get(head)
                    if parent is None:
                        parent = root.parent(head.split("/") if head else [], create=True)
                        parents[head] = parent
                    tmp = stage(parent, name, data, durable=durable, fsync=not has_syncfs())
                except OSError as exc:
                    raise storage_error("write", key, target, exc) from exc
                staged.append((parent, tmp, name, key, target))
            if durable and staged and has_syncfs():
                try:
                    flush_filesystem(staged[0][0])
                except OSError as exc:
                    key, target = staged[0][3], staged[0][4]
                    raise storage_error("write", key, target, exc) from exc
            while staged:
                parent, tmp, name, key, target = staged[0]
                try:
                    os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                except OSError as exc:
                    raise storage_error("write", key, target, exc) from exc
                staged.pop(0)
        except BaseException:
            for parent, tmp, *_ in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent)
            raise
        if durable:
            for head, parent in parents.items():
                try:
                    fsync_dir(parent)
                except OSError as exc:
                    where = os.path.join(root.path, head)
                    raise StorageError(
                        f"file storage cannot make the writes in {where} durable: {exc}"
                    ) from exc
    finally:
        for parent in parents.values():
            os.close(parent)
    return [version(data) for _, _, data in targets]
