"""Shared fixtures: the event-loop matrix and the one ``storage`` fixture.

Every behaviour test that takes ``storage`` runs over every backend. Cloud
backends add their kinds to ``STORAGE_KINDS`` through ``tests/servers.py``,
which starts real S3/GCS-compatible servers on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from asyncflow.providers import Storage, StorageDefault, StorageFile

try:
    import uvloop  # noqa: F401

    _HAS_UVLOOP = True
except ImportError:  # pragma: no cover - uvloop is in the test extra
    _HAS_UVLOOP = False

ANYIO_BACKENDS: list[Any] = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(
        ("asyncio", {"use_uvloop": True}),
        id="uvloop",
        marks=pytest.mark.skipif(not _HAS_UVLOOP, reason="uvloop not installed"),
    ),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


StorageFactory = Callable[[pytest.FixtureRequest, Path], Any]


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return StorageDefault()


def _file(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return StorageFile(tmp_path / "store")


#: kind -> factory; a factory may be an async context manager factory
#: (returning an object with ``__aenter__``) for backends that need cleanup.
STORAGE_KINDS: dict[str, StorageFactory] = {"memory": _memory, "file": _file}

from tests.servers import CLOUD_STORAGE_KINDS  # noqa: E402

#: registers the session server fixtures that the cloud factories request lazily
pytest_plugins = ["tests.servers"]

STORAGE_KINDS.update(CLOUD_STORAGE_KINDS)


@pytest.fixture(params=sorted(STORAGE_KINDS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    made = STORAGE_KINDS[request.param](request, tmp_path)
    if hasattr(made, "__aenter__"):
        async with made as entered:
            yield entered
    else:
        try:
            yield made
        finally:
            await made.aclose()
