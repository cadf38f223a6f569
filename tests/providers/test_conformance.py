"""The conformance suite over every backend of the shared ``storage`` fixture.

Memory, file, S3 on SeaweedFS and on moto, and GCS on fake-gcs-server run the
same checks; nothing here knows which backend it has. The second half proves
the suite has teeth: each deliberately broken backend fails the check meant
to catch it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from asyncflow._core.errors import PreconditionFailed
from asyncflow.providers import Blob, Storage, StorageDefault
from asyncflow.testing import CHECKS, ConformanceOptions, StorageConformance, run_conformance

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


async def test_run_conformance_runs_every_check_but_the_skipped(storage: Storage) -> None:
    skip = {"many_keys", "concurrent_if_absent", "concurrent_if_version"}
    ran = await run_conformance(storage, ConformanceOptions(writers=2, many_keys=3), skip=skip)
    assert ran == [name for name in CHECKS if name not in skip]


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
async def test_the_reference_backend_passes_each_check(check: str) -> None:
    """The broken backends above fail only because of their one defect."""
    await CHECKS[check](StorageDefault(), ConformanceOptions())


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
