"""The first failure of a run is the one raised: a failing lease release never masks it."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator

import pytest

from asyncflow import AsyncFlow, Config, StorageError, action
from asyncflow.providers import Blob, Storage

pytestmark = pytest.mark.anyio


class BrokenDisk:
    """Delegates to a real backend; task records fail (if ``tasks``), and so does the release."""

    def __init__(self, inner: Storage, *, tasks: bool = True) -> None:
        self.inner = inner
        self.persistent = inner.persistent
        self.tasks = tasks

    async def read(self, key: str) -> Blob | None:
        return await self.inner.read(key)

    async def write(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> str:
        if self.tasks and "/tasks/" in key:
            raise StorageError(f"disk full writing {key}")
        if key.endswith("/lease.json") and b'"released": true' in data:
            raise StorageError(f"cannot release {key}")
        return await self.inner.write(key, data, if_absent=if_absent, if_version=if_version)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        async for key in self.inner.list(prefix):
            yield key

    async def aclose(self) -> None:
        return None


def _flow(storage: BrokenDisk) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="wf")

    @action
    async def one() -> int:
        return 1

    flow.task.add(step=one)
    return flow


async def test_a_failing_release_does_not_mask_the_runs_first_error(storage: Storage) -> None:
    broken = BrokenDisk(storage)
    with pytest.raises(StorageError, match="disk full writing wf/tasks/") as caught:
        await _flow(broken).start()
    notes: builtins.list[str] = getattr(caught.value, "__notes__", [])
    if hasattr(caught.value, "add_note"):
        assert any("releasing the lease of wf also failed" in note for note in notes), notes


async def test_a_failing_release_alone_is_raised(storage: Storage) -> None:
    flow = _flow(BrokenDisk(storage, tasks=False))
    with pytest.raises(StorageError, match=r"cannot release wf/lease\.json"):
        await flow.start()
    assert [task.status.name for task in flow.task.queue] == ["COMPLETED"]
