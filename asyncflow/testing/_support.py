"""What every conformance check shares: its options, the hostile keys, and small helpers.

Each check works under its own random key namespace and removes what it
wrote (``cleaned_up``), so the suite can run against a real bucket that
holds other data.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from asyncflow._kernel.capabilities import delete_many
from asyncflow._kernel.errors import ConfigurationError
from asyncflow._kernel.storage import Blob, Storage

__all__ = [
    "HOSTILE_KEYS",
    "Check",
    "ConformanceOptions",
    "bounded",
    "cleaned_up",
    "cleanup",
    "expect",
    "listed",
    "namespace",
    "read_back",
    "short",
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


Check = Callable[[Storage, ConformanceOptions], Awaitable[None]]

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


def expect(condition: object, message: str) -> None:
    """``assert`` that survives ``python -O``: a broken backend must never pass."""
    if not condition:
        raise AssertionError(message)


def short(value: object) -> str:
    """``repr`` cut to 40 characters, for a 2000-character key in a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def namespace() -> str:
    """A fresh key namespace, so checks never see each other's keys."""
    return f"conformance-{secrets.token_hex(6)}"


async def cleanup(storage: Storage, keys: Iterable[str], concurrency: int = 32) -> None:
    """Delete ``keys``, in batches when the backend declares ``delete_many``."""
    await delete_many(storage, list(keys), concurrency=concurrency)


async def bounded(concurrency: int, calls: Sequence[Callable[[], Awaitable[Any]]]) -> None:
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
async def cleaned_up(
    storage: Storage, keys: Iterable[str], concurrency: int = 32
) -> AsyncIterator[None]:
    """Delete ``keys`` afterwards; a cleanup error never hides the check's own."""
    try:
        yield
    except Exception:
        with contextlib.suppress(Exception):
            await cleanup(storage, keys, concurrency)
        raise
    await cleanup(storage, keys, concurrency)


async def read_back(storage: Storage, key: str) -> Blob:
    blob = await storage.read(key)
    if blob is None:
        raise AssertionError(f"{key} was written but reads as missing")
    expect(isinstance(blob, Blob), f"read must return a Blob, got {type(blob).__name__}")
    return blob


async def listed(storage: Storage, prefix: str) -> list[str]:
    return [key async for key in storage.list(prefix)]
