"""``StorageFile`` never follows a symlink out of its root, and an odd file is an error.

Each test builds a sentinel tree *outside* the root, plants symlinks (or a
directory, a FIFO) below the root where the layout expects a directory or a
record, then drives every entry point: ``read``, ``read_many``, ``write``
(plain, conditional, batched), ``delete``, ``list``, a run, a fresh run, a
resume and ``clear_workflow``. The sentinel tree must hash the same after.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import string
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncflow import AsyncFlow, Config, StorageError, action
from asyncflow._core.records import clear_workflow
from asyncflow._core.worker import list_workflows
from asyncflow.providers import StorageFile

pytestmark = pytest.mark.anyio


def tree_hash(root: Path) -> str:
    """Names, kinds and bytes of everything under ``root`` (symlinks by target, not followed)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            path = Path(dirpath) / name
            h.update(str(path.relative_to(root)).encode())
            if path.is_symlink():
                h.update(b"L" + os.readlink(path).encode())
            elif path.is_file():
                h.update(b"F" + path.read_bytes())
            else:
                h.update(b"D")
    return h.hexdigest()


def sentinel(base: Path) -> Path:
    outside = base / "outside"
    (outside / "tasks").mkdir(parents=True)
    (outside / "run.json").write_bytes(b"not yours")
    (outside / "tasks" / "0.json").write_bytes(b"precious")
    (outside / "invoice.pdf").write_bytes(b"%PDF")
    return outside


def two_step_flow(storage: StorageFile, workflow_id: str = "wf") -> tuple[AsyncFlow, list[str]]:
    ran: list[str] = []
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)

    @action
    async def one() -> int:
        ran.append("one")
        return 1

    @action
    async def two() -> int:
        ran.append("two")
        return 2

    flow.task.add(step=one, key="0")  # the record names the tests below use
    flow.task.add(step=two, key="1")
    return flow, ran


async def every_entry_point(storage: StorageFile, workflow_id: str, key: str) -> list[str]:
    """Drive each operation; return the errors' messages (each must be a StorageError)."""
    messages: list[str] = []

    async def attempt(op: object) -> None:
        try:
            await op  # type: ignore[misc]
        except StorageError as exc:
            messages.append(str(exc))

    where = f"{workflow_id}/{key}"
    await attempt(storage.write(where, b"x"))
    await attempt(storage.write(where, b"x", if_absent=True))
    await attempt(storage.write_many([(where, b"x"), (f"{workflow_id}/run.json", b"{}")]))
    await attempt(storage.read(where))
    await attempt(storage.read_many([where]))
    await attempt(storage.delete(where))

    async def listed() -> None:
        [k async for k in storage.list(f"{workflow_id}/")]
        [k async for k in storage.list(f"{workflow_id}/tasks/")]

    async def children() -> None:
        [s async for s in storage.list_children(f"{workflow_id}/")]
        [s async for s in storage.list_children(f"{workflow_id}/tasks/")]

    await attempt(listed())
    await attempt(children())
    await attempt(clear_workflow(storage, workflow_id))
    flow, _ = two_step_flow(storage, workflow_id)
    await attempt(flow.start(resume=False))
    flow, _ = two_step_flow(storage, workflow_id)
    await attempt(flow.start(resume=True))
    return messages


@pytest.mark.parametrize("planted", ["wf", "wf/tasks"])
async def test_a_symlinked_directory_below_the_root_is_refused(
    tmp_path: Path, planted: str
) -> None:
    outside = sentinel(tmp_path)
    root = tmp_path / "root"
    link = root / planted
    link.parent.mkdir(parents=True)
    link.symlink_to(outside / "tasks" if planted.endswith("tasks") else outside)
    before = tree_hash(outside)
    storage = StorageFile(root)
    messages = await every_entry_point(storage, "wf", "tasks/0.json")
    assert tree_hash(outside) == before
    assert messages, "nothing was refused"
    assert any(f"{link} is a symlink" in m for m in messages), messages


async def test_list_children_never_follows_a_symlink(tmp_path: Path) -> None:
    outside = sentinel(tmp_path)
    root = tmp_path / "root"
    (root / "real" / "tasks").mkdir(parents=True)
    (root / "real" / "run.json").write_bytes(b"{}")
    (root / "wf").symlink_to(outside, target_is_directory=True)
    storage = StorageFile(root)
    # a symlinked folder is given as a key, never as a folder: no worker scans it
    assert [s async for s in storage.list_children("")] == ["real/", "wf"]
    assert [w async for w in list_workflows(storage)] == ["real"]
    with pytest.raises(StorageError, match="is a symlink"):
        [s async for s in storage.list_children("wf/")]


async def test_a_symlink_where_a_record_should_be_is_an_error_not_no_checkpoint(
    tmp_path: Path,
) -> None:
    outside = sentinel(tmp_path)
    before = tree_hash(outside)
    storage = StorageFile(tmp_path / "root")
    flow, ran = two_step_flow(storage)
    await flow.start()
    record = tmp_path / "root" / "wf" / "tasks" / "0.json"
    record.unlink()
    record.symlink_to(outside / "tasks" / "0.json")
    flow, ran = two_step_flow(storage)
    with pytest.raises(StorageError, match=f"{record} is a symlink"):
        await flow.start(resume=True)
    assert ran == []  # nothing re-ran
    with pytest.raises(StorageError, match="is a symlink"):
        await storage.read("wf/tasks/0.json")
    assert "wf/tasks/0.json" in [k async for k in storage.list("wf/tasks/")]
    assert await clear_workflow(storage, "wf") == 4  # the link, 1.json, run.json, a run summary
    assert not record.is_symlink()
    assert tree_hash(outside) == before


@pytest.mark.parametrize("kind", ["directory", "fifo"])
async def test_a_directory_or_fifo_at_a_record_path_fails_resume_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    storage = StorageFile(tmp_path / "root")
    flow, ran = two_step_flow(storage)
    await flow.start()
    record = tmp_path / "root" / "wf" / "tasks" / "1.json"
    record.unlink()
    if kind == "directory":
        record.mkdir()
    else:
        os.mkfifo(record)
    flow, ran = two_step_flow(storage)
    with anyio.fail_after(10):  # a blocking open of a FIFO would hang here
        with pytest.raises(
            StorageError, match=f"{record} is a {kind.upper()}|{record} is a {kind}"
        ):
            await flow.start(resume=True)
        with pytest.raises(StorageError, match=str(record)):
            await storage.read("wf/tasks/1.json")
        with pytest.raises(StorageError, match=str(record)):
            await storage.write("wf/tasks/1.json", b"{}", if_absent=True)
    assert ran == []


async def test_the_root_itself_may_be_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    storage = StorageFile(tmp_path / "link")
    flow, _ = two_step_flow(storage)
    await flow.start()
    assert (real / "wf" / "tasks" / "1.json").is_file()
    flow, ran = two_step_flow(storage)
    await flow.start(resume=True)
    assert ran == []


_ID = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=6)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    workflow_id=_ID,
    task_key=_ID,
    placement=st.sampled_from(["wf", "tasks", "record", "lock", "run", "lease", "temp"]),
    target=st.sampled_from(["dir", "tasks", "file", "missing"]),
)
def test_no_symlink_placement_changes_a_file_outside_the_root(
    tmp_path_factory: pytest.TempPathFactory,
    workflow_id: str,
    task_key: str,
    placement: str,
    target: str,
) -> None:
    base = tmp_path_factory.mktemp("contain")
    try:
        outside = sentinel(base)
        root = base / "root"
        wf = root / workflow_id
        (wf / "tasks").mkdir(parents=True)
        link = {
            "wf": wf,
            "tasks": wf / "tasks",
            "record": wf / "tasks" / f"{task_key}.json",
            "lock": wf / ".lease.json.lock",
            "run": wf / "run.json",
            "lease": wf / "lease.json",
            "temp": wf / "tasks" / f".{task_key}.json.lock",
        }[placement]
        if link.is_dir():
            shutil.rmtree(link)
        pointee = {
            "dir": outside,
            "tasks": outside / "tasks",
            "file": outside / "tasks" / "0.json",
            "missing": outside / "nothing-here",
        }[target]
        link.symlink_to(pointee)
        before = tree_hash(outside)
        storage = StorageFile(root)
        anyio.run(every_entry_point, storage, workflow_id, f"tasks/{task_key}.json")
        assert tree_hash(outside) == before
        assert not (outside / "nothing-here").exists()
    finally:
        shutil.rmtree(base)
