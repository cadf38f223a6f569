"""The storage conformance suite: what every ``Storage`` backend must do.

The engine's guarantees (a checkpoint is never lost, torn or silently
re-run; one runner per workflow) rest on a handful of backend properties.
Each ``check_*`` coroutine proves one of them against a live backend and
raises ``AssertionError`` (or the backend's own error) when it does not
hold. They need nothing but anyio, so they run under pytest, unittest or a
plain script, on asyncio or trio.

The checks of an optional capability (``read_many``, ``write_many``,
``delete_many``, ``list_versions``, ``tidy``, ...) run only on a backend that declares it
(``REQUIRES`` names which check needs which), and then as strictly as the
rest: a backend that declares one and gets it wrong fails.

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

from collections.abc import Iterable
from typing import ClassVar

from asyncflow._kernel.capabilities import Capabilities
from asyncflow._kernel.errors import ConfigurationError
from asyncflow._kernel.public import publish
from asyncflow._kernel.storage import Storage
from asyncflow.testing._capabilities import (
    check_background_writer,
    check_delete_many,
    check_instant_writer,
    check_read_many,
    check_tidy,
    check_write_many,
)
from asyncflow.testing._conditional import (
    check_concurrent_if_absent,
    check_concurrent_if_version,
    check_if_absent,
    check_if_version,
)
from asyncflow.testing._listing import (
    check_list_children,
    check_list_versions,
    check_listing,
    check_many_keys,
)
from asyncflow.testing._records import (
    check_delete,
    check_hostile_keys,
    check_missing_key,
    check_overwrite,
    check_persistent_flag,
    check_round_trip,
    check_versions,
)
from asyncflow.testing._support import HOSTILE_KEYS, Check, ConformanceOptions

__all__ = [
    "CHECKS",
    "HOSTILE_KEYS",
    "REQUIRES",
    "ConformanceOptions",
    "StorageConformance",
    "applicable",
    "check_background_writer",
    "check_concurrent_if_absent",
    "check_concurrent_if_version",
    "check_delete",
    "check_delete_many",
    "check_hostile_keys",
    "check_if_absent",
    "check_if_version",
    "check_instant_writer",
    "check_list_children",
    "check_list_versions",
    "check_listing",
    "check_many_keys",
    "check_missing_key",
    "check_overwrite",
    "check_persistent_flag",
    "check_read_many",
    "check_round_trip",
    "check_tidy",
    "check_versions",
    "check_write_many",
    "run_conformance",
]

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
        check_list_versions,
        check_many_keys,
        check_delete,
        check_hostile_keys,
        check_read_many,
        check_write_many,
        check_delete_many,
        check_tidy,
        check_instant_writer,
        check_background_writer,
    )
}

#: The checks of an optional capability: check name -> the capability it needs.
REQUIRES: dict[str, str] = {
    "list_versions": "list_versions",
    "read_many": "read_many",
    "write_many": "write_many",
    "delete_many": "delete_many",
    "tidy": "tidy",
    "instant_writer": "instant_writer",
    "background_writer": "background_writer",
}


def applicable(storage: Storage) -> list[str]:
    """The names of the checks that apply to ``storage``: every check of the
    required methods, and those of the capabilities it declares."""
    declared = set(Capabilities.of(storage).declared)
    return [name for name in CHECKS if name not in REQUIRES or REQUIRES[name] in declared]


async def run_conformance(
    storage: Storage,
    options: ConformanceOptions | None = None,
    *,
    skip: Iterable[str] = (),
) -> list[str]:
    """Run every check that applies (but those named in ``skip``); return the names run.

    The first failing check raises; its message says which property broke.
    """
    options = options or ConformanceOptions()
    skipped = set(skip)
    unknown = skipped - CHECKS.keys()
    if unknown:
        raise ConfigurationError(f"unknown conformance checks: {sorted(unknown)}")
    ran = []
    for name in applicable(storage):
        if name not in skipped:
            await CHECKS[name](storage, options)
            ran.append(name)
    return ran


class StorageConformance:
    """pytest mix-in: one test per check over a ``storage`` fixture you provide.

    Mark the subclass with ``@pytest.mark.anyio`` (anyio's plugin runs the
    async tests) and override ``writers`` / ``many_keys`` / ``concurrency``
    for slow servers. The test of a capability the backend does not declare
    is skipped, saying so. The class name does not start with ``Test`` so
    that importing it does not collect it twice.
    """

    writers: ClassVar[int] = 20
    many_keys: ClassVar[int] = 1001
    concurrency: ClassVar[int] = 32

    @property
    def conformance_options(self) -> ConformanceOptions:
        return ConformanceOptions(
            writers=self.writers, many_keys=self.many_keys, concurrency=self.concurrency
        )

    async def _check(self, name: str, storage: Storage) -> None:
        if name not in applicable(storage):
            import pytest  # only ever run by pytest; the module itself does not need it

            pytest.skip(f"{storage!r} does not declare {REQUIRES[name]}")
        await CHECKS[name](storage, self.conformance_options)

    async def test_persistent_flag(self, storage: Storage) -> None:
        await self._check("persistent_flag", storage)

    async def test_round_trip(self, storage: Storage) -> None:
        await self._check("round_trip", storage)

    async def test_overwrite(self, storage: Storage) -> None:
        await self._check("overwrite", storage)

    async def test_missing_key(self, storage: Storage) -> None:
        await self._check("missing_key", storage)

    async def test_versions(self, storage: Storage) -> None:
        await self._check("versions", storage)

    async def test_if_absent(self, storage: Storage) -> None:
        await self._check("if_absent", storage)

    async def test_if_version(self, storage: Storage) -> None:
        await self._check("if_version", storage)

    async def test_concurrent_if_absent(self, storage: Storage) -> None:
        await self._check("concurrent_if_absent", storage)

    async def test_concurrent_if_version(self, storage: Storage) -> None:
        await self._check("concurrent_if_version", storage)

    async def test_listing(self, storage: Storage) -> None:
        await self._check("listing", storage)

    async def test_list_children(self, storage: Storage) -> None:
        await self._check("list_children", storage)

    async def test_list_versions(self, storage: Storage) -> None:
        await self._check("list_versions", storage)

    async def test_many_keys(self, storage: Storage) -> None:
        await self._check("many_keys", storage)

    async def test_delete(self, storage: Storage) -> None:
        await self._check("delete", storage)

    async def test_hostile_keys(self, storage: Storage) -> None:
        await self._check("hostile_keys", storage)

    async def test_read_many(self, storage: Storage) -> None:
        await self._check("read_many", storage)

    async def test_write_many(self, storage: Storage) -> None:
        await self._check("write_many", storage)

    async def test_delete_many(self, storage: Storage) -> None:
        await self._check("delete_many", storage)

    async def test_tidy(self, storage: Storage) -> None:
        await self._check("tidy", storage)

    async def test_instant_writer(self, storage: Storage) -> None:
        await self._check("instant_writer", storage)

    async def test_background_writer(self, storage: Storage) -> None:
        await self._check("background_writer", storage)


publish(__name__, globals())
