"""The storage conformance suite: what every ``Storage`` backend must do.

The engine's guarantees (a checkpoint is never lost, torn or silently
re-run; one runner per workflow) rest on a handful of backend properties.
Each ``check_*`` coroutine below proves one of them against a live backend
and raises ``AssertionError`` (or the backend's own error) when it does not
hold. They need nothing but anyio, so they run under pytest, unittest or a
plain script, on asyncio or trio.

Every check works under its own random key namespace and removes what it
wrote, so the suite can run against a real bucket that holds other data.

With pytest (and anyio's plugin), subclass :class:`StorageConformance` and
provide a ``storage`` fixture::

    import pytest
    from asyncflow.testing import StorageConformance

    @pytest.mark.anyio
    class TestMyStorage(StorageConformance):
        writers = 5            # fewer racing writers for a slow server

        @pytest.fixture
        async def storage(self):
            async with MyStorage(...) as storage:
                yield storage

Without pytest: ``await run_conformance(storage)``.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import anyio.lowlevel

from asyncflow._core.capabilities import delete_many, list_children
from asyncflow._core.errors import ConfigurationError, PreconditionFailed
from asyncflow._core.storage import Blob, Storage

__all__ = [
    "CHECKS",
    "HOSTILE_KEYS",
    "ConformanceOptions",
    "StorageConformance",
    "check_concurrent_if_absent",
    "check_concurrent_if_version",
    "check_delete",
    "check_hostile_keys",
    "check_if_absent",
    "check_if_version",
    "check_listing",
    "check_many_keys",
    "check_missing_key",
    "check_overwrite",
    "check_persistent_flag",
    "check_round_trip",
    "check_versions",
    "run_conformance",
]


@dataclass(frozen=True, slots=True)
class ConformanceOptions:
    """Knobs for slow or rate-limited servers; the defaults are the contract.

    ``writers``: concurrent conditional writers racing for one key (exactly
    one must win). ``many_keys``: keys listed in one go; above 1000 it crosses
    a page on S3 and GCS, which is the point. ``concurrency``: how many
    requests the suite itself keeps in flight while populating and cleaning.
    """

    writers: int = 20
    many_keys: int = 1001
    concurrency: int = 32

    def __post_init__(self) -> None:
        if self.writers < 2:
            raise ConfigurationError("ConformanceOptions.writers must be at least 2 to race")
        if self.many_keys < 1 or self.concurrency < 1:
            raise ConfigurationError("ConformanceOptions counts must be positive")


#: Keys every backend must refuse with ``ConfigurationError`` before any I/O:
#: each would escape the root, collide after normalisation, or hide a file.
HOSTILE_KEYS: tuple[str, ...] = (
    "",
    "../x",
    "a/../../x",
    "..",
    ".",
    "/abs",
    "a//b",
    "a/",
    "a/./b",
    "a\x00b",
    "a\nb",
    ".hidden",
    "a/.hidden",
    "a\\b",
    "..\\x",
    "C:\\x",
    "a b",
    "caf\u00e9",
    "-flag",
    "x" * 2000,
)


def _expect(condition: object, message: str) -> None:
    """``assert`` that survives ``python -O``: a broken backend must never pass."""
    if not condition:
        raise AssertionError(message)


def _namespace() -> str:
    """A fresh key namespace, so checks never see each other's keys."""
    return f"conformance-{secrets.token_hex(6)}"


async def _cleanup(storage: Storage, keys: Iterable[str], concurrency: int = 32) -> None:
    """Delete ``keys``, in batches when the backend offers ``delete_many``."""
    await delete_many(storage, list(keys), concurrency=concurrency)


async def _bounded(concurrency: int, calls: Sequence[Callable[[], Awaitable[Any]]]) -> None:
    """Run ``calls`` with at most ``concurrency`` in flight.

    The first error cancels the rest and is raised as itself, not wrapped in
    an exception group, so a failing backend reads plainly in the report.
    """
    limiter = anyio.CapacityLimiter(concurrency)
    errors: list[Exception] = []

    async def one(call: Callable[[], Awaitable[Any]], scope: anyio.CancelScope) -> None:
        async with limiter:
            try:
                await call()
            except Exception as exc:
                errors.append(exc)
                scope.cancel()

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(one, call, tg.cancel_scope)
    if errors:
        raise errors[0]


@contextlib.asynccontextmanager
async def _cleaned_up(
    storage: Storage, keys: Iterable[str], concurrency: int = 32
) -> AsyncIterator[None]:
    """Delete ``keys`` afterwards; a cleanup error never hides the check's own."""
    try:
        yield
    except Exception:
        with contextlib.suppress(Exception):
            await _cleanup(storage, keys, concurrency)
        raise
    await _cleanup(storage, keys, concurrency)


async def _read(storage: Storage, key: str) -> Blob:
    blob = await storage.read(key)
    if blob is None:
        raise AssertionError(f"{key} was written but reads as missing")
    _expect(isinstance(blob, Blob), f"read must return a Blob, got {type(blob).__name__}")
    return blob


async def _listed(storage: Storage, prefix: str) -> list[str]:
    return [key async for key in storage.list(prefix)]


# -- the checks ---------------------------------------------------------------


async def check_persistent_flag(storage: Storage, options: ConformanceOptions) -> None:
    """``persistent`` is a bool: the engine refuses ``resume=True`` across
    processes on storage that forgets everything when the process ends."""
    _expect(isinstance(storage.persistent, bool), "storage.persistent must be a bool")


async def check_round_trip(storage: Storage, options: ConformanceOptions) -> None:
    """Bytes come back exactly, with the version ``write`` returned: binary
    data, an empty record and a nested key included."""
    ns = _namespace()
    cases = {
        f"{ns}/record.json": b'{"output": [1, 2, 3]}',
        f"{ns}/binary.bin": bytes(range(256)) * 4,
        f"{ns}/empty.json": b"",
        f"{ns}/a/b/c/deep.json": b"deep",
    }
    async with _cleaned_up(storage, cases):
        for key, data in cases.items():
            version = await storage.write(key, data)
            _expect(isinstance(version, str), f"write must return a str version, got {version!r}")
            _expect(version, "write returned an empty version")
            blob = await _read(storage, key)
            _expect(blob.data == data, f"{key}: read {blob.data[:60]!r}, wrote {data[:60]!r}")
            _expect(
                blob.version == version,
                f"{key}: read version {blob.version!r} differs from written {version!r}",
            )


async def check_overwrite(storage: Storage, options: ConformanceOptions) -> None:
    """A plain write replaces the record (checkpoints are overwritten on re-run)."""
    key = f"{_namespace()}/tasks/0.json"
    async with _cleaned_up(storage, [key]):
        await storage.write(key, b"first")
        await storage.write(key, b"second, and longer than the first")
        blob = await _read(storage, key)
        _expect(blob.data == b"second, and longer than the first", f"overwrite left {blob.data!r}")
        await storage.write(key, b"3")
        blob = await _read(storage, key)
        _expect(blob.data == b"3", f"a shorter overwrite left {blob.data!r}")


async def check_missing_key(storage: Storage, options: ConformanceOptions) -> None:
    """A key that was never written reads as ``None``, not as an error and
    not as empty bytes: ``None`` is the only "no checkpoint" answer."""
    ns = _namespace()
    _expect(await storage.read(f"{ns}/never.json") is None, "a missing key must read as None")
    _expect(
        await storage.read(f"{ns}/no/such/dir/never.json") is None,
        "a key under a missing directory must read as None",
    )


async def check_versions(storage: Storage, options: ConformanceOptions) -> None:
    """Versions change when the content does and match between write and read."""
    key = f"{_namespace()}/v.json"
    async with _cleaned_up(storage, [key]):
        v1 = await storage.write(key, b"one")
        v2 = await storage.write(key, b"two")
        _expect(v1 != v2, f"different content kept version {v1!r}")
        blob = await _read(storage, key)
        _expect(blob.version == v2, f"read version {blob.version!r}, last write returned {v2!r}")


async def check_if_absent(storage: Storage, options: ConformanceOptions) -> None:
    """``if_absent=True`` creates only: it is how a lease is first taken."""
    key = f"{_namespace()}/lease.json"
    async with _cleaned_up(storage, [key]):
        version = await storage.write(key, b"mine", if_absent=True)
        try:
            await storage.write(key, b"yours", if_absent=True)
        except PreconditionFailed:
            pass
        else:
            raise AssertionError("if_absent=True overwrote an existing key")
        blob = await _read(storage, key)
        _expect(blob.data == b"mine", f"a failed if_absent write changed the data: {blob.data!r}")
        _expect(blob.version == version, f"read version {blob.version!r}, written {version!r}")


async def check_if_version(storage: Storage, options: ConformanceOptions) -> None:
    """``if_version=v`` is compare-and-swap: it wins only at version ``v``
    (a lease renewal), loses on a stale version and on a missing key."""
    ns = _namespace()
    key, missing = f"{ns}/lease.json", f"{ns}/missing.json"
    async with _cleaned_up(storage, [key, missing]):
        v1 = await storage.write(key, b"one")
        v2 = await storage.write(key, b"two", if_version=v1)
        _expect(v2 != v1, f"a swap kept version {v1!r}")
        try:
            await storage.write(key, b"stale", if_version=v1)
        except PreconditionFailed:
            pass
        else:
            raise AssertionError("if_version with a stale version overwrote the record")
        blob = await _read(storage, key)
        _expect((blob.data, blob.version) == (b"two", v2), f"a lost swap changed {blob}")
        try:
            await storage.write(missing, b"ghost", if_version=v2)
        except PreconditionFailed:
            pass
        else:
            raise AssertionError("if_version on a missing key created it")
        _expect(await storage.read(missing) is None, "a failed if_version write created the key")


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
    key = f"{_namespace()}/lease.json"
    async with _cleaned_up(storage, [key]):
        lost, won = await _race(
            storage,
            options.writers,
            lambda i: storage.write(key, f"writer-{i}".encode(), if_absent=True),
        )
        _expect(len(won) == 1, f"{len(won)} of {options.writers} if_absent writers won: {won}")
        _expect(len(lost) == options.writers - 1, f"{len(lost)} writers lost")
        ((winner, version),) = won.items()
        blob = await _read(storage, key)
        _expect(blob.data == f"writer-{winner}".encode(), f"stored {blob.data!r}, winner {winner}")
        _expect(blob.version == version, f"read version {blob.version!r}, written {version!r}")


async def check_concurrent_if_version(storage: Storage, options: ConformanceOptions) -> None:
    """Of N concurrent compare-and-swaps from one version exactly one wins:
    two runners renewing or taking over one lease cannot both succeed."""
    key = f"{_namespace()}/lease.json"
    async with _cleaned_up(storage, [key]):
        base = await storage.write(key, b"base")
        lost, won = await _race(
            storage,
            options.writers,
            lambda i: storage.write(key, f"writer-{i}".encode(), if_version=base),
        )
        _expect(len(won) == 1, f"{len(won)} of {options.writers} if_version writers won: {won}")
        _expect(len(lost) == options.writers - 1, f"{len(lost)} writers lost")
        ((winner, version),) = won.items()
        blob = await _read(storage, key)
        _expect(blob.data == f"writer-{winner}".encode(), f"stored {blob.data!r}, winner {winner}")
        _expect(blob.version == version, f"read version {blob.version!r}, written {version!r}")


async def check_listing(storage: Storage, options: ConformanceOptions) -> None:
    """``list`` yields every key under a prefix, sorted, relative to the
    storage root, including prefixes that end mid-segment (``wf/a``)."""
    ns = _namespace()
    keys = [
        f"{ns}/wf/run.json",
        f"{ns}/wf/tasks/0.json",
        f"{ns}/wf/tasks/1.json",
        f"{ns}/wf/tasks/10.json",
        f"{ns}/wf/tasks/2.json",
        f"{ns}/wf-2/run.json",
        f"{ns}/wf.b/run.json",
        f"{ns}/wfx.json",
    ]
    async with _cleaned_up(storage, keys):
        for key in keys:
            await storage.write(key, b"x")
        everything = await _listed(storage, f"{ns}/")
        _expect(everything == sorted(keys), f"list({ns}/) gave {everything}")
        wf = await _listed(storage, f"{ns}/wf/")
        _expect(wf == sorted(k for k in keys if "/wf/" in k), f"list({ns}/wf/) gave {wf}")
        tasks_1 = await _listed(storage, f"{ns}/wf/tasks/1")
        _expect(
            tasks_1 == [f"{ns}/wf/tasks/1.json", f"{ns}/wf/tasks/10.json"],
            f"list({ns}/wf/tasks/1) gave {tasks_1}",
        )
        not_on_boundary = await _listed(storage, f"{ns}/wf")
        _expect(not_on_boundary == sorted(keys), f"list({ns}/wf) gave {not_on_boundary}")
        dash = await _listed(storage, f"{ns}/wf-")
        _expect(dash == [f"{ns}/wf-2/run.json"], f"list({ns}/wf-) gave {dash}")
        _expect(await _listed(storage, f"{ns}/nothing/") == [], "an empty prefix listed keys")
        _expect(await _listed(storage, f"{ns}-none") == [], "a foreign prefix listed keys")
        whole = await _listed(storage, "")
        _expect(whole == sorted(whole), "list('') is not sorted")
        _expect(set(keys) <= set(whole), "list('') misses keys")


async def check_list_children(storage: Storage, options: ConformanceOptions) -> None:
    """``list_children(prefix)`` (optional; derived from ``list`` when absent)
    yields each next path segment once, sorted: ``name/`` for a folder,
    ``name`` for a key right under the prefix; this is how ``asyncflow list``
    finds workflow ids without reading every record."""
    ns = _namespace()
    keys = [
        f"{ns}/wf/run.json",
        f"{ns}/wf/tasks/0.json",
        f"{ns}/wf/tasks/1.json",
        f"{ns}/wf-2/run.json",
        f"{ns}/wf.b/run.json",
        f"{ns}/wfx.json",
    ]
    async with _cleaned_up(storage, keys):
        for key in keys:
            await storage.write(key, b"x")
        top = [s async for s in list_children(storage, f"{ns}/")]
        expected = ["wf-2/", "wf.b/", "wf/", "wfx.json"]
        _expect(top == expected, f"list_children({ns}/) gave {top}, expected {expected}")
        inner = [s async for s in list_children(storage, f"{ns}/wf/")]
        _expect(inner == ["run.json", "tasks/"], f"list_children({ns}/wf/) gave {inner}")
        none = [s async for s in list_children(storage, f"{ns}/nothing/")]
        _expect(none == [], f"list_children of an empty prefix gave {none}")
        root = [s async for s in list_children(storage, "")]
        _expect(f"{ns}/" in root, f"list_children('') misses {ns}/")
        _expect(root == sorted(set(root)), "list_children('') is not sorted and unique")


async def check_many_keys(storage: Storage, options: ConformanceOptions) -> None:
    """Listing returns every key when there are more than fit on one page
    (S3 and GCS answer 1000 per page): resume must not miss a checkpoint."""
    ns = _namespace()
    keys = [f"{ns}/tasks/{i:05d}.json" for i in range(options.many_keys)]
    async with _cleaned_up(storage, keys, options.concurrency):
        await _bounded(
            options.concurrency,
            [functools.partial(storage.write, k, b"{}") for k in keys],
        )
        listed = await _listed(storage, f"{ns}/")
        _expect(len(listed) == len(keys), f"listed {len(listed)} of {len(keys)} keys")
        _expect(listed == keys, "listing differs from what was written (order or content)")
    _expect(await _listed(storage, f"{ns}/") == [], "keys survived their deletion")


async def check_delete(storage: Storage, options: ConformanceOptions) -> None:
    """``delete`` removes the record and its listing entry; deleting a
    missing key is not an error (``clear`` must be safe to repeat)."""
    ns = _namespace()
    key, other = f"{ns}/tasks/0.json", f"{ns}/tasks/1.json"
    async with _cleaned_up(storage, [key, other]):
        await storage.write(key, b"gone soon")
        await storage.write(other, b"stays")
        await storage.delete(key)
        _expect(await storage.read(key) is None, "a deleted key still reads")
        left = await _listed(storage, f"{ns}/")
        _expect(left == [other], f"after delete, list gave {left}")
        await storage.delete(key)
        await storage.delete(f"{ns}/never/written.json")
        blob = await _read(storage, other)
        _expect(blob.data == b"stays", f"deleting one key changed another: {blob.data!r}")
        version = await storage.write(key, b"back", if_absent=True)
        _expect(version, "a deleted key cannot be created again with if_absent")


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
            listed = await _listed(storage, prefix)
        except ConfigurationError:
            continue
        _expect(listed == [], f"list({prefix!r}) yielded {listed[:5]}")
    for bad in (None, b"bytes", 3):
        try:
            await storage.read(bad)  # type: ignore[arg-type]
        except ConfigurationError:
            continue
        raise AssertionError(f"read({bad!r}) was not refused with ConfigurationError")


Check = Callable[[Storage, ConformanceOptions], Awaitable[None]]

#: Every check, in the order ``run_conformance`` runs them.
CHECKS: dict[str, Check] = {
    check.__name__.removeprefix("check_"): check
    for check in (
        check_persistent_flag,
        check_round_trip,
        check_overwrite,
        check_missing_key,
        check_versions,
        check_if_absent,
        check_if_version,
        check_concurrent_if_absent,
        check_concurrent_if_version,
        check_listing,
        check_list_children,
        check_many_keys,
        check_delete,
        check_hostile_keys,
    )
}


async def run_conformance(
    storage: Storage,
    options: ConformanceOptions | None = None,
    *,
    skip: Iterable[str] = (),
) -> list[str]:
    """Run every check (but those named in ``skip``) and return the names run.

    The first failing check raises; its message says which property broke.
    """
    options = options or ConformanceOptions()
    skipped = set(skip)
    unknown = skipped - CHECKS.keys()
    if unknown:
        raise ConfigurationError(f"unknown conformance checks: {sorted(unknown)}")
    ran = []
    for name, check in CHECKS.items():
        if name not in skipped:
            await check(storage, options)
            ran.append(name)
    return ran


class StorageConformance:
    """pytest mix-in: one test per check over a ``storage`` fixture you provide.

    Mark the subclass with ``@pytest.mark.anyio`` (anyio's plugin runs the
    async tests) and override ``writers`` / ``many_keys`` / ``concurrency``
    for slow servers. The class name does not start with ``Test`` so that
    importing it does not collect it twice.
    """

    writers: ClassVar[int] = 20
    many_keys: ClassVar[int] = 1001
    concurrency: ClassVar[int] = 32

    @property
    def conformance_options(self) -> ConformanceOptions:
        return ConformanceOptions(
            writers=self.writers, many_keys=self.many_keys, concurrency=self.concurrency
        )

    async def test_persistent_flag(self, storage: Storage) -> None:
        await check_persistent_flag(storage, self.conformance_options)

    async def test_round_trip(self, storage: Storage) -> None:
        await check_round_trip(storage, self.conformance_options)

    async def test_overwrite(self, storage: Storage) -> None:
        await check_overwrite(storage, self.conformance_options)

    async def test_missing_key(self, storage: Storage) -> None:
        await check_missing_key(storage, self.conformance_options)

    async def test_versions(self, storage: Storage) -> None:
        await check_versions(storage, self.conformance_options)

    async def test_if_absent(self, storage: Storage) -> None:
        await check_if_absent(storage, self.conformance_options)

    async def test_if_version(self, storage: Storage) -> None:
        await check_if_version(storage, self.conformance_options)

    async def test_concurrent_if_absent(self, storage: Storage) -> None:
        await check_concurrent_if_absent(storage, self.conformance_options)

    async def test_concurrent_if_version(self, storage: Storage) -> None:
        await check_concurrent_if_version(storage, self.conformance_options)

    async def test_listing(self, storage: Storage) -> None:
        await check_listing(storage, self.conformance_options)

    async def test_list_children(self, storage: Storage) -> None:
        await check_list_children(storage, self.conformance_options)

    async def test_many_keys(self, storage: Storage) -> None:
        await check_many_keys(storage, self.conformance_options)

    async def test_delete(self, storage: Storage) -> None:
        await check_delete(storage, self.conformance_options)

    async def test_hostile_keys(self, storage: Storage) -> None:
        await check_hostile_keys(storage, self.conformance_options)
