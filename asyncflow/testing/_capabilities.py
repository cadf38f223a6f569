"""The checks of the optional capabilities (``asyncflow._kernel.capabilities``).

Each runs only on a backend that declares its capability (``REQUIRES`` in
``conformance``), and then as strictly as the required methods: the order
of the answers, missing keys, every key validated before any I/O, versions
that take part in compare-and-swap. Called on a backend without the
capability, a check raises ``ConfigurationError``: it never passes for
having checked nothing.
"""

from __future__ import annotations

import inspect
from typing import Any

from asyncflow._kernel.capabilities import Capabilities
from asyncflow._kernel.errors import ConfigurationError, PreconditionFailed
from asyncflow._kernel.storage import Blob, Storage
from asyncflow.testing._support import (
    HOSTILE_KEYS,
    ConformanceOptions,
    cleaned_up,
    cleanup,
    expect,
    listed,
    namespace,
    read_back,
    short,
)

__all__ = [
    "check_background_writer",
    "check_delete_many",
    "check_instant_writer",
    "check_read_many",
    "check_tidy",
    "check_write_many",
]

#: Hostile keys plus values that are not keys at all.
_BAD_KEYS: tuple[Any, ...] = (*HOSTILE_KEYS, None, b"bytes")


def _declared(storage: Storage, name: str) -> Any:
    found = getattr(Capabilities.of(storage), name)
    if found is None:
        raise ConfigurationError(f"{storage!r} does not declare {name}: nothing to check")
    return found


async def check_read_many(storage: Storage, options: ConformanceOptions) -> None:
    """``read_many(keys)`` answers as ``read`` would for each key, in the order
    given: the bytes and version written, ``None`` for a missing key (under a
    missing folder too, asked twice too); ``[]`` for no keys; every key is
    validated before any is read."""
    batch = _declared(storage, "read_many")
    ns = namespace()
    written = {
        f"{ns}/a.json": b'{"a": 1}',
        f"{ns}/x/y/deep.bin": bytes(range(256)) * 4,
        f"{ns}/empty.json": b"",
    }
    async with cleaned_up(storage, written):
        versions = {key: await storage.write(key, data) for key, data in written.items()}
        a, deep, empty = written
        wanted = [deep, f"{ns}/missing.json", a, f"{ns}/no/such/dir/x.json", empty, a]
        got = await batch(wanted)
        expect(isinstance(got, list), f"read_many must return a list, got {type(got).__name__}")
        expect(len(got) == len(wanted), f"read_many of {len(wanted)} keys gave {len(got)}")
        for key, blob in zip(wanted, got, strict=True):
            if key not in written:
                expect(blob is None, f"read_many: the missing {key} gave {blob!r}, not None")
                continue
            expect(isinstance(blob, Blob), f"read_many: {key} gave {blob!r}, not a Blob")
            expect(
                blob.data == written[key],
                f"read_many: {key} read {blob.data[:60]!r}, wrote {written[key][:60]!r}",
            )
            expect(
                blob.version == versions[key],
                f"read_many: {key} version {blob.version!r}, written {versions[key]!r}",
            )
        expect(await batch([]) == [], "read_many([]) must return []")
        for bad in _BAD_KEYS:
            try:
                await batch([a, bad])
            except ConfigurationError:
                continue
            raise AssertionError(f"read_many with {short(bad)} was not refused")


async def check_write_many(storage: Storage, options: ConformanceOptions) -> None:
    """``write_many(items)`` writes every ``(key, data)`` and returns their
    versions in order, each the one ``read`` then gives and one that
    ``if_version`` accepts; an overwrite changes it; ``[]`` writes nothing;
    one bad key refuses the whole call before anything is written."""
    batch = _declared(storage, "write_many")
    ns = namespace()
    items = [
        (f"{ns}/a.json", b"one"),
        (f"{ns}/x/y/deep.bin", bytes(range(256)) * 4),
        (f"{ns}/empty.json", b""),
    ]
    first = items[0][0]
    sentinel = f"{ns}/sentinel.json"
    async with cleaned_up(storage, [*(key for key, _ in items), sentinel]):
        versions = await batch(list(items))
        expect(isinstance(versions, list), "write_many must return a list of versions")
        expect(len(versions) == len(items), f"write_many of {len(items)} gave {len(versions)}")
        for (key, data), version in zip(items, versions, strict=True):
            expect(isinstance(version, str) and version, f"write_many: {key} version {version!r}")
            blob = await read_back(storage, key)
            expect(blob.data == data, f"write_many: {key} read {blob.data[:60]!r}")
            expect(
                blob.version == version, f"write_many: {key} read {blob.version!r}, not {version!r}"
            )
        (again,) = await batch([(first, b"two, and longer than one")])
        expect(again != versions[0], f"write_many of new bytes kept the version {again!r}")
        blob = await read_back(storage, first)
        expect(blob.data == b"two, and longer than one", f"write_many overwrite left {blob.data!r}")
        swapped = await storage.write(first, b"three", if_version=again)
        try:
            await storage.write(first, b"stale", if_version=again)
        except PreconditionFailed:
            pass
        else:
            raise AssertionError("if_version with a version write_many replaced still won")
        expect((await read_back(storage, first)).version == swapped, "a lost swap changed it")
        expect(await batch([]) == [], "write_many([]) must return []")
        for bad in _BAD_KEYS:
            try:
                await batch([(sentinel, b"x"), (bad, b"x")])
            except ConfigurationError:
                expect(
                    await storage.read(sentinel) is None,
                    f"write_many wrote {sentinel} before refusing {short(bad)}",
                )
                continue
            raise AssertionError(f"write_many with {short(bad)} was not refused")


async def check_delete_many(storage: Storage, options: ConformanceOptions) -> None:
    """``delete_many(keys)`` deletes exactly those keys; missing ones (also
    under a missing folder, also deleted twice) are fine; one bad key refuses
    the whole call before anything is deleted; a deleted key can be created
    again with ``if_absent``."""
    batch = _declared(storage, "delete_many")
    ns = namespace()
    keys = [f"{ns}/tasks/{i}.json" for i in range(5)]
    other = f"{ns}/other/run.json"
    async with cleaned_up(storage, [*keys, other]):
        for key in [*keys, other]:
            await storage.write(key, key.encode())
        await batch([keys[0], keys[2], f"{ns}/never.json", keys[4], f"{ns}/no/dir/x.json"])
        for index, key in enumerate(keys):
            blob = await storage.read(key)
            if index % 2 == 0:
                expect(blob is None, f"delete_many left {key}")
            else:
                expect(blob is not None and blob.data == key.encode(), f"it changed {key}")
        left = await listed(storage, f"{ns}/")
        expect(left == sorted([keys[1], keys[3], other]), f"after delete_many, list gave {left}")
        await batch([])
        await batch([keys[0]])
        for bad in _BAD_KEYS:
            try:
                await batch([keys[1], bad])
            except ConfigurationError:
                expect(
                    await storage.read(keys[1]) is not None,
                    f"delete_many deleted {keys[1]} before refusing {short(bad)}",
                )
                continue
            raise AssertionError(f"delete_many with {short(bad)} was not refused")
        version = await storage.write(keys[0], b"back", if_absent=True)
        expect(version, "a key deleted by delete_many cannot be created again with if_absent")


async def check_tidy(storage: Storage, options: ConformanceOptions) -> None:
    """``tidy(prefix)`` never removes a record: every key under the prefix
    reads the same after; conditional writes work after it; once everything
    is deleted nothing lists; it returns an ``int``; the whole storage
    (``""``) and prefixes outside the root are refused."""
    tidy = _declared(storage, "tidy")
    ns = namespace()
    wf = f"{ns}/wf"
    lease = f"{wf}/lease.json"
    keep = [f"{wf}/a/b/c.json", f"{wf}/run.json", f"{wf}/tasks/1.json"]
    drop = [f"{wf}/tasks/0.json", f"{wf}/x/y/z.json"]
    async with cleaned_up(storage, [*keep, *drop, lease]):
        for key in [*keep, *drop]:
            await storage.write(key, key.encode())
        version = await storage.write(lease, b"mine", if_absent=True)
        await storage.write(lease, b"renewed", if_version=version)
        await cleanup(storage, [*drop, lease])
        removed = await tidy(f"{wf}/")
        expect(type(removed) is int and removed >= 0, f"tidy returned {removed!r}, not an int")
        left = await listed(storage, f"{ns}/")
        expect(left == keep, f"after tidy, list gave {left}, expected {keep}")
        for key in keep:
            blob = await read_back(storage, key)
            expect(blob.data == key.encode(), f"tidy changed {key}: {blob.data!r}")
        version = await storage.write(lease, b"again", if_absent=True)
        await storage.write(lease, b"renewed", if_version=version)
        await cleanup(storage, [*keep, lease])
        await tidy(f"{wf}/")
        left = await listed(storage, f"{ns}/")
        expect(left == [], f"after deleting everything and tidy, list gave {left}")
        await tidy(f"{ns}/nothing/")
        for bad in ("", "/", "../", "../x/"):
            try:
                await tidy(bad)
            except ConfigurationError:
                continue
            raise AssertionError(f"tidy({bad!r}) was not refused with ConfigurationError")


async def check_instant_writer(storage: Storage, options: ConformanceOptions) -> None:
    """Engine-internal (``StorageDefault``): the write ``instant_writer()`` gives
    never suspends (it returns a version, not an awaitable); what it wrote
    reads back with that version, which ``if_version`` accepts."""
    put = _declared(storage, "instant_writer")()
    if put is None:
        return  # declined for this storage (it overrides write): nothing bypasses write
    key = f"{namespace()}/tasks/a.json"
    async with cleaned_up(storage, [key]):
        first = put(key, b"one")
        if inspect.isawaitable(first):
            if inspect.iscoroutine(first):
                first.close()  # never run: no "never awaited" warning on top of the failure
            raise AssertionError("the instant write returned an awaitable: it must not suspend")
        expect(isinstance(first, str) and first, f"the instant write returned {first!r}")
        expect(await read_back(storage, key) == Blob(b"one", first), "it did not read back")
        second = put(key, b"two")
        expect(second != first, f"an instant overwrite kept the version {first!r}")
        await storage.write(key, b"three", if_version=second)
        expect((await read_back(storage, key)).data == b"three", "swap from its version failed")


async def check_background_writer(storage: Storage, options: ConformanceOptions) -> None:
    """Engine-internal (``StorageFile``): the records a session of
    ``background_writer()`` is given land in submission order, each whole,
    by the time ``wait`` returns."""
    session_of = _declared(storage, "background_writer")()
    if session_of is None:
        return  # declined for this storage (it overrides write): nothing bypasses write
    ns = namespace()
    key, deep = f"{ns}/tasks/a.json", f"{ns}/x/y/deep.json"
    async with cleaned_up(storage, [key, deep]):
        async with session_of as session:
            first = session.submit([(key, b"one")])
            second = session.submit([(key, b"two"), (deep, b"deep")])
            await session.wait(first)
            await session.wait(second)
        expect((await read_back(storage, key)).data == b"two", "the writes landed out of order")
        expect((await read_back(storage, deep)).data == b"deep", "a queued write did not land")
