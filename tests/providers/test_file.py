"""``StorageFile``'s read side: string paths and raw reads, same keys and errors as pathlib."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asyncflow import StorageError
from asyncflow._kernel.errors import ConfigurationError
from asyncflow.providers import Blob, StorageFile
from tests._core.test_ids import HOSTILE_KEYS

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("root", [".", "", "rel/dir", "./rel/", "/", "/abs/dir", "/abs/dir/"])
def test_file_paths_are_the_pathlib_joins(root: str) -> None:
    storage = StorageFile(root)
    for key in ("a", "wf/run.json", "wf/tasks/k1.json"):
        expected = Path(root).joinpath(*key.split("/"))
        assert storage._file(key) == str(expected)
        assert storage._target(key) == expected


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=[repr(k)[:30] for k in HOSTILE_KEYS])
async def test_hostile_keys_are_refused_by_every_read(tmp_path: Path, key: str) -> None:
    storage = StorageFile(tmp_path / "root")
    (tmp_path / "secret.json").write_bytes(b"{}")
    with pytest.raises(ConfigurationError, match="storage key"):
        await storage.read(key)
    with pytest.raises(ConfigurationError, match="storage key"):
        await storage.read_many(["ok.json", key])


async def test_reads_return_whole_files_of_any_size(tmp_path: Path) -> None:
    storage = StorageFile(tmp_path)
    sizes = [0, 1, 65_535, 65_536, 65_537, 300_000]
    for size in sizes:
        await storage.write(f"wf/{size}.json", os.urandom(size))
    keys = [f"wf/{size}.json" for size in sizes]
    blobs = await storage.read_many([*keys, "wf/missing.json", "nowhere/x.json"])
    assert blobs[-2:] == [None, None]
    for key, blob in zip(keys, blobs, strict=False):
        data = (tmp_path / key).read_bytes()
        assert blob == await storage.read(key)
        assert isinstance(blob, Blob)
        assert blob.data == data


async def test_an_unreadable_key_is_a_storage_error_naming_the_file(tmp_path: Path) -> None:
    storage = StorageFile(tmp_path)
    (tmp_path / "wf" / "dir.json").mkdir(parents=True)
    (tmp_path / "wf" / "file").write_bytes(b"x")
    cases = [
        ("wf/dir.json", "wf/dir.json", "a directory"),
        ("wf/file/x.json", "wf/file", "a regular file, not a directory"),
    ]
    for key, at, kind in cases:
        path = str(tmp_path.joinpath(*at.split("/")))
        with pytest.raises(StorageError, match="cannot read") as caught:
            await storage.read(key)
        assert f"{path} is {kind}" in str(caught.value)
        assert repr(key) in str(caught.value)
        with pytest.raises(StorageError, match="cannot read"):
            await storage.read_many([key])


async def test_list_walks_nested_keys_skips_hidden_and_lists_links(tmp_path: Path) -> None:
    storage = StorageFile(tmp_path)
    for key in ("wf/run.json", "wf/tasks/a.json", "wf/tasks/b.json", "wf/deep/x/y.json"):
        await storage.write(key, b"{}")
    (tmp_path / "wf" / "tasks" / ".tmp.json").write_bytes(b"")
    (tmp_path / "wf" / "tasks" / "link.json").symlink_to(tmp_path / "wf" / "run.json")
    # a symlink is listed (and refused when read), never skipped as "no record"
    assert [k async for k in storage.list("wf/")] == [
        "wf/deep/x/y.json",
        "wf/run.json",
        "wf/tasks/a.json",
        "wf/tasks/b.json",
        "wf/tasks/link.json",
    ]
    tasks = ["wf/tasks/a.json", "wf/tasks/b.json", "wf/tasks/link.json"]
    assert [k async for k in storage.list("wf/tasks/")] == tasks
    assert [k async for k in storage.list("wf/ta")] == tasks
    assert [k async for k in storage.list("nowhere/")] == []
    assert [k async for k in storage.list("wf/run.json/")] == []
    with pytest.raises(ConfigurationError, match="storage key"):
        [k async for k in storage.list("../")]


async def test_every_os_error_of_a_write_is_a_storage_error_naming_the_key(tmp_path: Path) -> None:
    storage = StorageFile(tmp_path)
    (tmp_path / "wf" / "tasks" / "b.json" / "inside").mkdir(parents=True)  # rename target
    (tmp_path / "wf" / ".lease.json.lock").mkdir()  # the lock file cannot be opened
    with pytest.raises(StorageError, match=r"cannot write 'wf/tasks/b\.json'"):
        await storage.write_many([("wf/tasks/a.json", b"{}"), ("wf/tasks/b.json", b"{}")])
    assert [k async for k in storage.list("wf/tasks/")] == ["wf/tasks/a.json"]
    assert not [p for p in (tmp_path / "wf" / "tasks").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(StorageError, match=r"cannot write 'wf/lease\.json'"):
        await storage.write("wf/lease.json", b"{}", if_absent=True)
    with pytest.raises(StorageError, match=r"cannot delete 'wf/tasks/b\.json'"):
        await storage.delete("wf/tasks/b.json")


async def test_list_under_a_record_is_empty_but_under_a_symlink_is_refused(tmp_path: Path) -> None:
    storage = StorageFile(tmp_path / "root")
    await storage.write("wf/run.json", b"{}")
    assert [k async for k in storage.list("wf/run.json/x/")] == []
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.json").write_bytes(b"{}")
    (tmp_path / "root" / "wf" / "tasks").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StorageError, match="is a symlink, not a directory"):
        [k async for k in storage.list("wf/tasks/")]
    assert "wf/tasks" in [k async for k in storage.list("wf/")]  # listed, not followed
