"""``Capabilities.of``: the one probe of what a storage declares, and the helpers built on it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from asyncflow import AsyncFlow, Config, action
from asyncflow._kernel.capabilities import READ_MANY_CHUNK, require_storage
from asyncflow._kernel.errors import ConfigurationError, StorageError
from asyncflow.providers import (
    Blob,
    Capabilities,
    Storage,
    StorageDefault,
    StorageFile,
    delete_many,
    list_children,
    read_many,
)

pytestmark = pytest.mark.anyio


def _docs_table() -> dict[str, set[str]]:
    """docs/storage.md's capability table: method name -> the backends it says declare it."""
    text = (Path(__file__).parents[2] / "docs" / "storage.md").read_text(encoding="utf-8")
    table: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line.startswith(("| `Supports", "| (internal)")):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        method = re.search(r"(\w+)\(", cells[1])
        assert method is not None, line
        table[method.group(1)] = set(re.findall(r"`(Storage\w+)`", cells[3]))
    return table


def test_bundled_backends_declare_what_the_docs_table_says(tmp_path: Path) -> None:
    from asyncflow.providers import StorageGCS, StorageS3

    backends: list[Any] = [
        StorageDefault(),
        StorageFile(tmp_path),
        StorageS3("bucket"),
        StorageGCS("bucket"),
    ]
    table = _docs_table()
    assert set(table) == {f.name for f in dataclasses.fields(Capabilities)}
    for backend in backends:
        documented = {name for name, owners in table.items() if type(backend).__name__ in owners}
        assert set(Capabilities.of(backend).declared) == documented, type(backend).__name__


class _Wrapper:
    """Delegates everything it does not define to ``inner`` through ``__getattr__``."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.writes: list[str] = []

    async def write(self, key: str, data: bytes, **kwargs: Any) -> str:
        self.writes.append(key)
        return await self.inner.write(key, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_delegating_wrapper_offers_the_inner_capabilities_but_not_the_write_fast_paths(
    tmp_path: Path,
) -> None:
    """Public capabilities are looked up on the instance; the fast paths that bypass
    ``write`` on the class, so the wrapper's own ``write`` sees every record."""
    for inner in (StorageDefault(), StorageFile(tmp_path)):
        caps = Capabilities.of(_Wrapper(inner))
        assert caps.list_children is not None
        assert caps.instant_writer is None
        assert caps.background_writer is None
    assert Capabilities.of(_Wrapper(StorageFile(tmp_path))).read_many is not None


async def test_a_wrapper_sees_every_record_write(tmp_path: Path) -> None:
    for inner in (StorageDefault(), StorageFile(tmp_path)):
        wrapper = _Wrapper(inner)
        flow = AsyncFlow(config=Config(storage=wrapper), workflow_id="wrapped")  # type: ignore[arg-type]
        flow.task.add(step=_one, key="a")
        flow.task.add(step=_one, key="b")
        await flow.start()
        assert [k for k in wrapper.writes if "/tasks/" in k] == [
            "wrapped/tasks/a.json",
            "wrapped/tasks/b.json",
        ]


@action
async def _one() -> int:
    return 1


def test_none_on_a_class_hides_an_inherited_capability(tmp_path: Path) -> None:
    class NoBatchReads(StorageFile):
        read_many = None

    assert Capabilities.of(NoBatchReads(tmp_path)).read_many is None
    assert Capabilities.of(NoBatchReads(tmp_path)).write_many is not None


def test_a_capability_that_is_not_a_method_is_refused() -> None:
    class Misspelt(StorageDefault):
        read_many = "yes"

    with pytest.raises(ConfigurationError, match="read_many is str, not a method"):
        Capabilities.of(Misspelt())


async def test_the_write_fast_paths_decline_for_a_subclass_that_overrides_write(
    tmp_path: Path,
) -> None:
    class Counting(StorageDefault):
        async def write(self, key: str, data: bytes, **kwargs: Any) -> str:
            return await super().write(key, data, **kwargs)

    class CountingFile(StorageFile):
        async def write(self, key: str, data: bytes, **kwargs: Any) -> str:
            return await super().write(key, data, **kwargs)

    memory = Capabilities.of(Counting()).instant_writer
    assert memory is not None
    assert memory() is None
    file = Capabilities.of(CountingFile(tmp_path)).background_writer
    assert file is not None
    assert file() is None

    class Plain(StorageDefault):
        pass

    storage = Plain()
    opener = Capabilities.of(storage).instant_writer
    assert opener is not None
    put = opener()
    assert put is not None
    put("wf/tasks/a.json", b"{}")
    assert (await storage.read("wf/tasks/a.json")) == Blob(
        b"{}", storage._data["wf/tasks/a.json"][1]
    )


def test_require_storage_names_the_missing_method() -> None:
    class NoList:
        async def read(self, key: str) -> None: ...
        async def write(self, key: str, data: bytes) -> str: ...
        async def delete(self, key: str) -> None: ...
        async def aclose(self) -> None: ...

    with pytest.raises(ConfigurationError, match=r"does not implement list\(\)"):
        require_storage(NoList(), "Config storage")
    with pytest.raises(ConfigurationError, match=r"Config storage .* list\(\)"):
        Config(storage=NoList())  # type: ignore[arg-type]


class _Batched(StorageDefault):
    """Counts the chunks its ``read_many`` and ``delete_many`` are given."""

    def __init__(self, short: bool = False) -> None:
        super().__init__()
        self.chunks: list[int] = []
        self.deleted: list[list[str]] = []
        self.short = short

    async def read_many(self, keys: list[str]) -> list[Blob | None]:
        self.chunks.append(len(keys))
        blobs = [await self.read(key) for key in keys]
        return blobs[:-1] if self.short else blobs

    async def delete_many(self, keys: list[str]) -> None:
        self.deleted.append(list(keys))
        for key in keys:
            await self.delete(key)


async def test_read_many_uses_the_capability_in_chunks_and_keeps_the_order() -> None:
    storage = _Batched()
    keys = [f"wf/tasks/{i:04d}.json" for i in range(READ_MANY_CHUNK * 2 + 10)]
    for key in keys[::2]:
        await storage.write(key, key.encode())
    wanted = list(reversed(keys))
    blobs = await read_many(storage, wanted)
    assert storage.chunks == [READ_MANY_CHUNK, READ_MANY_CHUNK, 10]
    assert [b.data.decode() if b else None for b in blobs] == [
        key if i % 2 == 0 else None for i, key in reversed(list(enumerate(keys)))
    ]
    assert await read_many(storage, []) == []


async def test_read_many_refuses_a_backend_that_answers_short() -> None:
    with pytest.raises(StorageError, match="returned 1 entries for 2 keys"):
        await read_many(_Batched(short=True), ["a.json", "b.json"])


async def test_read_many_without_the_capability_reads_concurrently_in_order() -> None:
    active = peak = 0
    inner = StorageDefault()

    class Slow:
        persistent = False

        async def read(self, key: str) -> Blob | None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await anyio.sleep(0.01)
            active -= 1
            return await inner.read(key)

        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

    keys = [f"k{i:02d}.json" for i in range(40)]
    for key in keys[1::3]:
        await inner.write(key, key.encode())
    blobs = await read_many(Slow(), keys, concurrency=8)  # type: ignore[arg-type]
    assert peak == 8
    assert [b.data.decode() if b else None for b in blobs] == [
        key if i % 3 == 1 else None for i, key in enumerate(keys)
    ]


async def test_delete_many_uses_the_capability_else_deletes_each() -> None:
    batched = _Batched()
    plain = StorageDefault()
    for storage in (batched, plain):
        for key in ("a.json", "b.json", "c.json"):
            await storage.write(key, b"x")
        await delete_many(storage, ["a.json", "c.json", "missing.json"])
        await delete_many(storage, [])
        assert [k async for k in storage.list("")] == ["b.json"]
    assert batched.deleted == [["a.json", "c.json", "missing.json"]]


async def test_list_children_falls_back_to_list_without_the_capability() -> None:
    inner = StorageDefault()
    for key in ("a/run.json", "a/tasks/0.json", "b/run.json", "top.json"):
        await inner.write(key, b"x")

    class ListOnly:
        persistent = False
        read = inner.read
        write = inner.write
        delete = inner.delete
        aclose = inner.aclose
        listed: ClassVar[list[str]] = []

        async def list(self, prefix: str) -> AsyncIterator[str]:
            self.listed.append(prefix)
            async for key in inner.list(prefix):
                yield key

    storage = ListOnly()
    assert Capabilities.of(storage).declared == ()
    assert [s async for s in list_children(storage, "")] == ["a/", "b/", "top.json"]  # type: ignore[arg-type]
    assert storage.listed == [""]
    with pytest.raises(ConfigurationError, match="must be empty or end with '/'"):
        [s async for s in list_children(storage, "a")]  # type: ignore[arg-type]
