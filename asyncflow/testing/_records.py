"""The checks of one record: bytes and versions round-trip, missing reads as ``None``,
delete, and every key validated before any I/O.
"""

from __future__ import annotations

import functools

from asyncflow._kernel.errors import ConfigurationError
from asyncflow._kernel.storage import Storage
from asyncflow.testing._support import (
    HOSTILE_KEYS,
    ConformanceOptions,
    cleaned_up,
    expect,
    listed,
    namespace,
    read_back,
)

__all__ = [
    "check_delete",
    "check_hostile_keys",
    "check_missing_key",
    "check_overwrite",
    "check_persistent_flag",
    "check_round_trip",
    "check_versions",
]


async def check_persistent_flag(storage: Storage, options: ConformanceOptions) -> None:
    """``persistent`` is a bool: the engine refuses ``resume=True`` across
    processes on storage that forgets everything when the process ends."""
    expect(isinstance(storage.persistent, bool), "storage.persistent must be a bool")


async def check_round_trip(storage: Storage, options: ConformanceOptions) -> None:
    """Bytes come back exactly, with the version ``write`` returned: binary
    data, an empty record and a nested key included."""
    ns = namespace()
    cases = {
        f"{ns}/record.json": b'{"output": [1, 2, 3]}',
        f"{ns}/binary.bin": bytes(range(256)) * 4,
        f"{ns}/empty.json": b"",
        f"{ns}/a/b/c/deep.json": b"deep",
    }
    async with cleaned_up(storage, cases):
        for key, data in cases.items():
            version = await storage.write(key, data)
            expect(isinstance(version, str), f"write must return a str version, got {version!r}")
            expect(version, "write returned an empty version")
            blob = await read_back(storage, key)
            expect(blob.data == data, f"{key}: read {blob.data[:60]!r}, wrote {data[:60]!r}")
            expect(
                blob.version == version,
                f"{key}: read version {blob.version!r} differs from written {version!r}",
            )


async def check_overwrite(storage: Storage, options: ConformanceOptions) -> None:
    """A plain write replaces the record (checkpoints are overwritten on re-run)."""
    key = f"{namespace()}/tasks/0.json"
    async with cleaned_up(storage, [key]):
        await storage.write(key, b"first")
        await storage.write(key, b"second, and longer than the first")
        blob = await read_back(storage, key)
        expect(blob.data == b"second, and longer than the first", f"overwrite left {blob.data!r}")
        await storage.write(key, b"3")
        blob = await read_back(storage, key)
        expect(blob.data == b"3", f"a shorter overwrite left {blob.data!r}")


async def check_missing_key(storage: Storage, options: ConformanceOptions) -> None:
    """A key that was never written reads as ``None``, not as an error and
    not as empty bytes: ``None`` is the only "no checkpoint" answer."""
    ns = namespace()
    expect(await storage.read(f"{ns}/never.json") is None, "a missing key must read as None")
    expect(
        await storage.read(f"{ns}/no/such/dir/never.json") is None,
        "a key under a missing directory must read as None",
    )


async def check_versions(storage: Storage, options: ConformanceOptions) -> None:
    """Versions change when the content does and match between write and read."""
    key = f"{namespace()}/v.json"
    async with cleaned_up(storage, [key]):
        v1 = await storage.write(key, b"one")
        v2 = await storage.write(key, b"two")
        expect(v1 != v2, f"different content kept version {v1!r}")
        blob = await read_back(storage, key)
        expect(blob.version == v2, f"read version {blob.version!r}, last write returned {v2!r}")


async def check_delete(storage: Storage, options: ConformanceOptions) -> None:
    """``delete`` removes the record and its listing entry; deleting a
    missing key is not an error (``clear`` must be safe to repeat)."""
    ns = namespace()
    key, other = f"{ns}/tasks/0.json", f"{ns}/tasks/1.json"
    async with cleaned_up(storage, [key, other]):
        await storage.write(key, b"gone soon")
        await storage.write(other, b"stays")
        await storage.delete(key)
        expect(await storage.read(key) is None, "a deleted key still reads")
        left = await listed(storage, f"{ns}/")
        expect(left == [other], f"after delete, list gave {left}")
        await storage.delete(key)
        await storage.delete(f"{ns}/never/written.json")
        blob = await read_back(storage, other)
        expect(blob.data == b"stays", f"deleting one key changed another: {blob.data!r}")
        version = await storage.write(key, b"back", if_absent=True)
        expect(version, "a deleted key cannot be created again with if_absent")


async def check_hostile_keys(storage: Storage, options: ConformanceOptions) -> None:
    """Keys that could escape the root or alias another key are refused with
    ``ConfigurationError`` by every operation, before touching the backend."""
    for key in HOSTILE_KEYS:
        for name, call in (
            ("read", functools.partial(storage.read, key)),
            ("write", functools.partial(storage.write, key, b"x")),
            ("write(if_absent)", functools.partial(storage.write, key, b"x", if_absent=True)),
            ("delete", functools.partial(storage.delete, key)),
        ):
            try:
                await call()
            except ConfigurationError:
                continue
            raise AssertionError(f"{name}({key[:40]!r}) was not refused with ConfigurationError")
    for prefix in ("../", "/", "/etc/", "a//", "..\\"):
        try:
            found = await listed(storage, prefix)
        except ConfigurationError:
            continue
        expect(found == [], f"list({prefix!r}) yielded {found[:5]}")
    for bad in (None, b"bytes", 3):
        try:
            await storage.read(bad)  # type: ignore[arg-type]
        except ConfigurationError:
            continue
        raise AssertionError(f"read({bad!r}) was not refused with ConfigurationError")
