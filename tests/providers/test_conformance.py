"""The conformance suite over every backend of the shared ``storage`` fixture.

Memory, file, S3 on SeaweedFS and on moto, and GCS on fake-gcs-server run the
same checks; nothing here knows which backend it has. The second half proves
the suite has teeth: each deliberately broken backend fails the check meant
to catch it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from asyncflow._kernel.errors import ConfigurationError, PreconditionFailed
from asyncflow._kernel.ids import validate_storage_key
from asyncflow.providers import Blob, Capabilities, Storage, StorageDefault, StorageFile
from asyncflow.testing import (
    CHECKS,
    REQUIRES,
    ConformanceOptions,
    StorageConformance,
    run_conformance,
)

pytestmark = pytest.mark.anyio


class TestStorageConformance(StorageConformance):
    """Every check, one test each, on every backend."""

    @pytest.mark.concurrent_writers
    async def test_concurrent_if_absent(self, storage: Storage) -> None:
        await super().test_concurrent_if_absent(storage)

    @pytest.mark.concurrent_writers
    async def test_concurrent_if_version(self, storage: Storage) -> None:
        await super().test_concurrent_if_version(storage)


def test_every_check_has_a_test_method() -> None:
    """A check added to CHECKS without a test method would silently never run."""
    methods = {name.removeprefix("test_") for name in dir(StorageConformance)}
    assert set(CHECKS) <= methods


async def test_run_conformance_runs_every_check_that_applies_but_the_skipped(
    storage: Storage,
) -> None:
    """Every check of the required methods, and those of the capabilities declared."""
    skip = {"many_keys", "concurrent_if_absent", "concurrent_if_version"}
    ran = await run_conformance(storage, ConformanceOptions(writers=2, many_keys=3), skip=skip)
    declared = Capabilities.of(storage).declared
    assert ran == [
        name
        for name in CHECKS
        if name not in skip and (name not in REQUIRES or REQUIRES[name] in declared)
    ]


# -- the suite catches broken backends ------------------------------------------


class _IgnoresIfAbsent(StorageDefault):
    async def write(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> str:
        return await super().write(key, data, if_version=if_version)


class _IgnoresIfVersionOnMissing(StorageDefault):
    async def write(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> str:
        if if_version is not None and await self.read(key) is None:
            if_version = None
        return await super().write(key, data, if_absent=if_absent, if_version=if_version)


class _CheckThenYield(StorageDefault):
    """Checks the condition, then awaits before storing: a racy backend."""

    async def write(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> str:
        current = await self.read(key)
        if if_absent and current is not None:
            raise PreconditionFailed(key)
        if if_version is not None and (current is None or current.version != if_version):
            raise PreconditionFailed(key)
        import anyio

        await anyio.sleep(0)
        return await super().write(key, data)


class _MissingIsEmpty(StorageDefault):
    async def read(self, key: str) -> Blob | None:
        return await super().read(key) or Blob(b"", "0")


class _TruncatedListing(StorageDefault):
    async def list(self, prefix: str) -> AsyncIterator[str]:
        keys = [key async for key in super().list(prefix)]
        for key in keys[:1000]:
            yield key


class _UnsortedListing(StorageDefault):
    async def list(self, prefix: str) -> AsyncIterator[str]:
        keys = [key async for key in super().list(prefix)]
        for key in reversed(keys):
            yield key


class _NoKeyValidation(StorageDefault):
    async def read(self, key: str) -> Blob | None:
        return self._data.get(key)


class _DeleteMissingRaises(StorageDefault):
    async def delete(self, key: str) -> None:
        if await self.read(key) is None:
            raise KeyError(key)
        await super().delete(key)


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (_IgnoresIfAbsent, "if_absent"),
        (_IgnoresIfAbsent, "concurrent_if_absent"),
        (_IgnoresIfVersionOnMissing, "if_version"),
        (_CheckThenYield, "concurrent_if_absent"),
        (_CheckThenYield, "concurrent_if_version"),
        (_MissingIsEmpty, "missing_key"),
        (_TruncatedListing, "many_keys"),
        (_UnsortedListing, "listing"),
        (_NoKeyValidation, "hostile_keys"),
        (_DeleteMissingRaises, "delete"),
    ],
)
async def test_a_broken_backend_fails_its_check(broken: type[StorageDefault], check: str) -> None:
    with pytest.raises((AssertionError, KeyError)):
        await CHECKS[check](broken(), ConformanceOptions())


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_the_reference_backend_passes_each_check(check: str, tmp_path: Path) -> None:
    """The broken backends above and below fail only because of their one defect."""
    reference = StorageFile(tmp_path) if check == "background_writer" else _Complete()
    await CHECKS[check](reference, ConformanceOptions())
    await reference.aclose()


@pytest.mark.parametrize("check", sorted(REQUIRES))
async def test_a_capability_check_refuses_a_backend_without_it(check: str) -> None:
    """Never a pass for having checked nothing."""

    class Bare(StorageDefault):
        instant_writer = None  # type: ignore[assignment]
        list_versions = None  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=f"does not declare {REQUIRES[check]}"):
        await CHECKS[check](Bare(), ConformanceOptions())


# -- the capability checks catch broken capabilities -------------------------------


class _Complete(StorageDefault):
    """The reference for the capability checks: every public capability, done right."""

    async def read_many(self, keys: list[str]) -> list[Blob | None]:
        for key in keys:
            validate_storage_key(key)
        return [await self.read(key) for key in keys]

    async def write_many(self, items: list[tuple[str, bytes]]) -> list[str]:
        for key, _ in items:
            validate_storage_key(key)
        return [await self.write(key, data) for key, data in items]

    async def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            validate_storage_key(key)
        for key in keys:
            await self.delete(key)

    async def tidy(self, prefix: str) -> int:
        head = prefix.rstrip("/")
        if not head:
            raise ConfigurationError("tidy needs a prefix")
        validate_storage_key(head)
        return 0


class _ReadManyReordered(_Complete):
    async def read_many(self, keys: list[str]) -> list[Blob | None]:
        return [await self.read(key) for key in sorted(keys)]


class _ReadManyMissingIsEmpty(_Complete):
    async def read_many(self, keys: list[str]) -> list[Blob | None]:
        return [blob or Blob(b"", "0") for blob in await super().read_many(keys)]


class _ReadManyUnvalidated(_Complete):
    async def read_many(self, keys: list[str]) -> list[Blob | None]:
        return [Blob(*self._data[k]) if k in self._data else None for k in keys]


class _WriteManyStaleVersions(_Complete):
    async def write_many(self, items: list[tuple[str, bytes]]) -> list[str]:
        versions = await super().write_many(items)
        return list(reversed(versions))


class _WriteManyHalfThenRefuses(_Complete):
    async def write_many(self, items: list[tuple[str, bytes]]) -> list[str]:
        return [await self.write(key, data) for key, data in items]


class _DeleteManyMissingRaises(_Complete):
    async def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            if await self.read(key) is None:
                raise KeyError(key)
            await self.delete(key)


class _DeleteManyHalfThenRefuses(_Complete):
    async def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            await self.delete(key)


class _TidyDeletesRecords(_Complete):
    async def tidy(self, prefix: str) -> int:
        doomed = [key async for key in self.list(prefix) if key.endswith("run.json")]
        for key in doomed:
            await self.delete(key)
        return len(doomed)


class _TidyTakesTheRoot(_Complete):
    async def tidy(self, prefix: str) -> int:
        return 0


class _TidyReturnsNothing(_Complete):
    async def tidy(self, prefix: str) -> int:
        await super().tidy(prefix)
        return None  # type: ignore[return-value]


class _ChildrenUnchecked(StorageDefault):
    async def list_children(self, prefix: str) -> AsyncIterator[str]:
        segments = set()
        for key in self._data:
            if key.startswith(prefix):
                head, sep, _ = key[len(prefix) :].partition("/")
                segments.add(head + sep)
        for segment in sorted(segments):
            yield segment


class _ChildrenUnsorted(StorageDefault):
    async def list_children(self, prefix: str) -> AsyncIterator[str]:
        found = [segment async for segment in super().list_children(prefix)]
        for segment in reversed(found):
            yield segment


class _VersionsBySize(StorageDefault):
    """A token a listing could give cheaply, but one that a same-size rewrite keeps."""

    async def list_versions(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        async for key in self.list(prefix):
            yield key, str(len(self._data[key][0]))


class _VersionsMissAKey(StorageDefault):
    async def list_versions(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        found = [item async for item in super().list_versions(prefix)]
        for item in found[1:]:
            yield item


class _VersionsUnchecked(StorageDefault):
    async def list_versions(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        for key in sorted(self._data):
            if key.startswith(prefix):
                yield key, self._data[key][1]
        if prefix.startswith(("/", "..")):
            yield "escaped", "1"


class _InstantWriterAwaits(StorageDefault):
    def instant_writer(self) -> Any:
        async def put(key: str, data: bytes) -> str:
            return self._put(key, data)

        return put


class _InstantWriterSameVersion(StorageDefault):
    def instant_writer(self) -> Any:
        def put(key: str, data: bytes) -> str:
            self._put(key, data)
            return "1"

        return put


class _BackgroundWriterReorders(_Complete):
    """Writes the queued jobs last first."""

    def background_writer(self) -> Any:
        put = self._put

        class Session:
            jobs: ClassVar[list[list[tuple[str, bytes]]]] = []

            def submit(self, items: list[tuple[str, bytes]]) -> int:
                self.jobs.append(list(items))
                return len(self.jobs)

            async def wait(self, ticket: int) -> None:
                for items in reversed(self.jobs):
                    for key, data in items:
                        put(key, data)
                self.jobs.clear()

        @contextlib.asynccontextmanager
        async def session() -> AsyncIterator[Session]:
            yield Session()

        return session()


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (_BackgroundWriterReorders, "background_writer"),
        (_VersionsBySize, "list_versions"),
        (_VersionsMissAKey, "list_versions"),
        (_VersionsUnchecked, "list_versions"),
        (_ReadManyReordered, "read_many"),
        (_ReadManyMissingIsEmpty, "read_many"),
        (_ReadManyUnvalidated, "read_many"),
        (_WriteManyStaleVersions, "write_many"),
        (_WriteManyHalfThenRefuses, "write_many"),
        (_DeleteManyMissingRaises, "delete_many"),
        (_DeleteManyHalfThenRefuses, "delete_many"),
        (_TidyDeletesRecords, "tidy"),
        (_TidyTakesTheRoot, "tidy"),
        (_TidyReturnsNothing, "tidy"),
        (_ChildrenUnchecked, "list_children"),
        (_ChildrenUnsorted, "list_children"),
        (_InstantWriterAwaits, "instant_writer"),
        (_InstantWriterSameVersion, "instant_writer"),
    ],
)
async def test_a_broken_capability_fails_its_check(
    broken: type[StorageDefault], check: str
) -> None:
    with pytest.raises((AssertionError, KeyError)):
        await CHECKS[check](broken(), ConformanceOptions())


class _ListOnly:
    """A user backend without ``list_children``: the fallback derives it from ``list``."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.persistent = inner.persistent
        self.read = inner.read
        self.write = inner.write
        self.delete = inner.delete
        self.list = inner.list
        self.aclose = inner.aclose


async def test_list_children_falls_back_to_list(storage: Storage) -> None:
    from asyncflow.testing.conformance import check_list_children

    await check_list_children(_ListOnly(storage), ConformanceOptions())  # type: ignore[arg-type]
