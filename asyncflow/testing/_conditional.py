"""The checks of conditional writes: ``if_absent`` creates only, ``if_version`` is
compare-and-swap, and of many concurrent conditional writers exactly one wins.

These are what leases rest on: two runners must never both hold a workflow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from asyncflow._kernel.errors import PreconditionFailed
from asyncflow._kernel.storage import Storage
from asyncflow.testing._support import (
    ConformanceOptions,
    cleaned_up,
    expect,
    namespace,
    read_back,
)

__all__ = [
    "check_concurrent_if_absent",
    "check_concurrent_if_version",
    "check_if_absent",
    "check_if_version",
]


async def check_if_absent(storage: Storage, options: ConformanceOptions) -> None:
    """``if_absent=True`` creates only: it is how a lease is first taken."""
    key = f"{namespace()}/lease.json"
    async with cleaned_up(storage, [key]):
        version = await storage.write(key, b"mine", if_absent=True)
        try:
            await storage.write(key, b"yours", if_absent=True)
        except PreconditionFailed:
            pass
        else:
            raise AssertionError("if_absent=True overwrote an existing key")
        blob = await read_back(storage, key)
        expect(blob.data == b"mine", f"a failed if_absent write changed the data: {blob.data!r}")
        expect(blob.version == version, f"read version {blob.version!r}, written {version!r}")


async def check_if_version(storage: Storage, options: ConformanceOptions) -> None:
    """``if_version=v`` is compare-and-swap: it wins only at version ``v``
    (a lease renewal), loses on a stale version and on a missing key."""
    ns = namespace()
    key, missing = f"{ns}/lease.json", f"{ns}/missing.json"
    async with cleaned_up(storage, [key, missing]):
        v1 = await storage.write(key, b"one")
        v2 = await storage.write(key, b"two", if_version=v1)
        expect(v2 != v1, f"a swap kept version {v1!r}")
        try:
            await storage.write(key, b"stale", if_version=v1)
        except PreconditionFailed:
            pass
        else:
            raise AssertionError("if_version with a stale version overwrote the record")
        blob = await read_back(storage, key)
        expect((blob.data, blob.version) == (b"two", v2), f"a lost swap changed {blob}")
        try:
            await storage.write(missing, b"ghost", if_version=v2)
        except PreconditionFailed:
            pass
        else:
            raise AssertionError("if_version on a missing key created it")
        expect(await storage.read(missing) is None, "a failed if_version write created the key")


async def _race(
    storage: Storage, writers: int, write: Callable[[int], Awaitable[str]]
) -> tuple[list[int], dict[int, str]]:
    """Start ``writers`` writes at once; return who lost and who won (with versions)."""
    lost: list[int] = []
    won: dict[int, str] = {}
    errors: list[Exception] = []
    start = anyio.Event()

    waiting = 0

    async def one(index: int) -> None:
        nonlocal waiting
        waiting += 1
        if waiting == writers:  # everyone is lined up: release them together
            start.set()
        await start.wait()
        try:
            won[index] = await write(index)
        except PreconditionFailed:
            lost.append(index)
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for index in range(writers):
            tg.start_soon(one, index)
    if errors:
        raise errors[0]
    return lost, won


async def check_concurrent_if_absent(storage: Storage, options: ConformanceOptions) -> None:
    """Of N concurrent ``if_absent`` writers exactly one wins, and its bytes
    are what is stored: two runners can never both take a lease."""
    key = f"{namespace()}/lease.json"
    async with cleaned_up(storage, [key]):
        lost, won = await _race(
            storage,
            options.writers,
            lambda i: storage.write(key, f"writer-{i}".encode(), if_absent=True),
        )
        expect(len(won) == 1, f"{len(won)} of {options.writers} if_absent writers won: {won}")
        expect(len(lost) == options.writers - 1, f"{len(lost)} writers lost")
        ((winner, version),) = won.items()
        blob = await read_back(storage, key)
        expect(blob.data == f"writer-{winner}".encode(), f"stored {blob.data!r}, winner {winner}")
        expect(blob.version == version, f"read version {blob.version!r}, written {version!r}")


async def check_concurrent_if_version(storage: Storage, options: ConformanceOptions) -> None:
    """Of N concurrent compare-and-swaps from one version exactly one wins:
    two runners renewing or taking over one lease cannot both succeed."""
    key = f"{namespace()}/lease.json"
    async with cleaned_up(storage, [key]):
        base = await storage.write(key, b"base")
        lost, won = await _race(
            storage,
            options.writers,
            lambda i: storage.write(key, f"writer-{i}".encode(), if_version=base),
        )
        expect(len(won) == 1, f"{len(won)} of {options.writers} if_version writers won: {won}")
        expect(len(lost) == options.writers - 1, f"{len(lost)} writers lost")
        ((winner, version),) = won.items()
        blob = await read_back(storage, key)
        expect(blob.data == f"writer-{winner}".encode(), f"stored {blob.data!r}, winner {winner}")
        expect(blob.version == version, f"read version {blob.version!r}, written {version!r}")
