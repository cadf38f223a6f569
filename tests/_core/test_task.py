"""Task keys: derived from step names, stable across processes and edits."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from asyncflow import AsyncFlow, CheckpointMismatch, Config, ConfigurationError, action
from asyncflow._core.action import step_name
from asyncflow._core.task import derive_key
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.layout import manifest_key, task_storage_key
from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import StorageDefault


async def fetch(url: str) -> str:
    return url


class Scorer:
    async def __call__(self) -> int:
        return 1

    def method(self) -> int:
        return 2


def test_partials_callable_objects_and_methods_are_named_without_an_address() -> None:
    assert step_name(functools.partial(fetch, url="x")) == "fetch"
    assert step_name(functools.partial(functools.partial(fetch), url="x")) == "fetch"
    assert step_name(Scorer()) == "Scorer"
    assert step_name(Scorer().method) == "Scorer.method"
    assert step_name(Scorer) == "Scorer"
    assert "0x" not in action(functools.partial(fetch, url="y")).name
    assert action(Scorer()).module == __name__


def test_code_hash_of_a_partial_is_its_function_source() -> None:
    one = action(functools.partial(fetch, url="a"))
    two = action(functools.partial(fetch, url="b"))
    assert one.code_hash == two.code_hash == action(fetch).code_hash


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("extract", "extract"),
        ("Pipeline.load", "Pipeline.load"),
        ("make.<locals>.step", "step"),
        ("a.<locals>.b.<locals>.Step.run", "Step.run"),
        ("make.<locals>.<lambda>", "_lambda_"),
        ("<lambda>", "_lambda_"),
        ("été", "_t_"),
        ("...", "step"),
    ],
)
def test_derived_keys_are_valid_ids(name: str, key: str) -> None:
    assert derive_key(name) == key
    validate_id(key, "key")


def test_long_names_keep_a_hash_so_they_never_collide() -> None:
    a = derive_key("x" * 300 + "a")
    b = derive_key("x" * 300 + "b")
    assert a != b
    assert len(a) <= 120
    validate_id(a, "key")


def test_repeats_are_numbered_in_the_order_added() -> None:
    flow = AsyncFlow()
    for step in (fetch, Scorer(), fetch, functools.partial(fetch, url="z")):
        flow.task.add(step=step)
    assert [t.key for t in flow.task.queue] == ["fetch", "Scorer", "fetch-2", "fetch-3"]
    flow.task.clear()
    flow.task.add(step=fetch)
    assert [t.key for t in flow.task.queue] == ["fetch"]


def test_a_default_key_taken_by_an_explicit_one_is_refused() -> None:
    flow = AsyncFlow()
    flow.task.add(step=Scorer(), key="fetch-2")
    flow.task.add(step=fetch)
    with pytest.raises(ConfigurationError, match="'fetch-2'"):
        flow.task.add(step=fetch)


def test_depends_on_must_be_keys() -> None:
    flow = AsyncFlow()
    with pytest.raises(ConfigurationError, match="depends_on"):
        flow.task.add(step=fetch, depends_on=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="depends_on key"):
        flow.task.add(step=fetch, depends_on=["../x"])
    with pytest.raises(ConfigurationError, match="twice"):
        flow.task.add(step=fetch, depends_on=["a", "a"])


def _old_manifest(keys: tuple[str, ...]) -> bytes:
    return Manifest(
        workflow_id="old",
        status="failed",
        fingerprint=None,
        mode="sequential",
        tasks=keys,
        created_at=1.0,
        updated_at=1.0,
    ).encode()


@pytest.mark.anyio
async def test_a_workflow_with_positional_records_gets_a_clear_error() -> None:
    storage = StorageDefault()
    await storage.write(manifest_key("old"), _old_manifest(("0", "1")))
    await storage.write(task_storage_key("old", "0"), b"{}")
    ran: list[str] = []

    async def step() -> None:
        ran.append("step")

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="old")
    flow.task.add(step=step)
    flow.task.add(step=fetch, initial_context="u")
    with pytest.raises(CheckpointMismatch, match=r"positional keys '0'..'1'.*key='0'"):
        await flow.start(resume=True)
    assert ran == []
    # Starting over is the way out; the new manifest says keys are names.
    await flow.start()
    blob = await storage.read(manifest_key("old"))
    assert blob is not None
    assert Manifest.decode(blob.data, "m").keys == "name"
    await flow.start(resume=True)


@pytest.mark.anyio
async def test_old_keys_pinned_in_order_or_no_old_records_resume() -> None:
    storage = StorageDefault()
    await storage.write(manifest_key("old"), _old_manifest(("0",)))

    async def step() -> str:
        return "s"

    def pinned() -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="old")
        flow.task.add(step=step, key="0")
        return flow

    named = AsyncFlow(config=Config(storage=storage), workflow_id="old")
    named.task.add(step=step)
    await named.start(resume=True)  # no record under an old key: nothing to mix up
    assert named.result_storage() == ["s"]
    await storage.write(manifest_key("old"), _old_manifest(("0",)))
    flow: Any = pinned()
    await flow.start(resume=True)
    assert flow.result_storage() == ["s"]
