"""Child flows: an AsyncFlow as a step, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from asyncflow import AsyncFlow, Config, ConfigurationError, Context, TaskStatus, action
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import Storage

pytestmark = pytest.mark.anyio


def logged(log: list[str], name: str) -> Any:
    async def body(previous_context: Context) -> Any:
        log.append(name)
        return f"{name}({previous_context.storage})"

    body.__qualname__ = name
    return action(body)


def parent_of(storage: Storage, log: list[str]) -> AsyncFlow:
    child = AsyncFlow()
    child.task.add(step=logged(log, "c1"))
    child.task.add(step=logged(log, "c2"))
    parent = AsyncFlow(config=Config(storage=storage), workflow_id="parent")
    parent.task.add(step=logged(log, "before"))
    parent.task.add(step=child, key="sub")
    parent.task.add(step=logged(log, "after"))
    return parent


async def test_a_child_runs_as_its_own_workflow_and_gives_its_last_output(
    storage: Storage,
) -> None:
    log: list[str] = []
    parent = parent_of(storage, log)
    await parent.start(resume=True)
    assert parent.status == "completed"
    assert log == ["before", "c1", "c2", "after"]
    assert parent.result_storage() == [
        "before(None)",
        "c2(c1(before(None)))",  # the child's first task gets the parent step's input
        "after(c2(c1(before(None))))",
    ]
    assert [t.kind for t in parent.result_task()] == ["step", "flow", "step"]
    blob = await storage.read(manifest_key("parent.sub"))
    assert blob is not None
    assert Manifest.decode(blob.data, "m").status == "completed"
    keys = sorted([k async for k in storage.list("parent.sub/tasks/")])
    assert keys == ["parent.sub/tasks/c1.json", "parent.sub/tasks/c2.json"]

    log.clear()
    await parent_of(storage, log).start(resume=True)
    assert log == []  # the parent's record of "sub" restores the child's output
    log.clear()
    await parent_of(storage, log).start()  # a fresh parent run is a fresh child run
    assert log == ["before", "c1", "c2", "after"]


async def test_a_failed_child_fails_its_step_and_resumes_with_the_parent(
    storage: Storage,
) -> None:
    log: list[str] = []
    failing = {"c2"}

    async def c2(previous_context: Context) -> str:
        log.append("c2")
        if failing:
            raise RuntimeError("c2 is down")
        return "c2"

    def build() -> AsyncFlow:
        child = AsyncFlow(workflow_id="child")  # a fixed id names the step
        child.task.add(step=logged(log, "c1"))
        child.task.add(step=c2)
        parent = AsyncFlow(config=Config(storage=storage), workflow_id="parent")
        parent.task.add(step=child)
        parent.task.add(step=logged(log, "after"))
        return parent

    parent = build()
    await parent.start(resume=True)
    assert parent.status == "failed"
    task = parent.result_task()[0]
    assert task.key == "child"
    assert task.status is TaskStatus.FAILED
    assert "c2 is down" in repr(task.error.__cause__)  # type: ignore[union-attr]
    failing.clear()
    log.clear()
    await build().start(resume=True)
    assert log == ["c2", "after"]


async def test_child_flows_nest_and_may_be_graphs(storage: Storage) -> None:
    log: list[str] = []
    inner = AsyncFlow()
    inner.task.add(step=logged(log, "deep"))
    middle = AsyncFlow()
    middle.task.add(step=logged(log, "m1"))
    middle.task.add(step=inner, key="inner", depends_on="m1")
    parent = AsyncFlow(config=Config(storage=storage), workflow_id="top")
    parent.task.add(step=middle, key="mid")
    await parent.start(resume=True)
    assert parent.result_storage() == ["deep(m1(None))"]  # "inner" depends on m1
    assert [k async for k in storage.list("top.mid.inner/tasks/")] == [
        "top.mid.inner/tasks/deep.json"
    ]


def test_a_child_needs_a_name() -> None:
    parent = AsyncFlow(workflow_id="p")
    with pytest.raises(ConfigurationError, match="child flow needs"):
        parent.task.add(step=AsyncFlow())
    with pytest.raises(ConfigurationError, match="child workflow id"):
        AsyncFlow(workflow_id="p" * 120).task.add(step=AsyncFlow(), key="k" * 20)


async def test_every_first_task_of_a_graph_child_gets_the_parent_step_input(
    storage: Storage,
) -> None:
    log: list[str] = []
    child = AsyncFlow()
    child.task.add(step=logged(log, "left"), key="left")
    child.task.add(step=logged(log, "right"), key="right")
    child.task.add(step=logged(log, "join"), key="join", depends_on=["left", "right"])
    parent = AsyncFlow(config=Config(storage=storage), workflow_id="gp")
    parent.task.add(step=logged(log, "before"))
    parent.task.add(step=child, key="sub")
    await parent.start(resume=True)
    assert parent.status == "completed"
    assert parent.result_storage()[1] == (
        "join({'left': 'left(before(None))', 'right': 'right(before(None))'})"
    )


async def test_a_child_task_whose_input_changed_runs_again(storage: Storage) -> None:
    """Its record keeps the digest of the parent step's input, as a chain's step does."""
    log: list[str] = []
    value = {"now": "x"}
    failing = {"c2"}

    @action
    async def before() -> str:
        log.append("before")
        return value["now"]

    async def c2(previous_context: Context) -> str:
        log.append("c2")
        if failing:
            raise RuntimeError("c2 is down")
        return f"c2({previous_context.storage})"

    def build() -> AsyncFlow:
        child = AsyncFlow()
        child.task.add(step=logged(log, "c1"))
        child.task.add(step=c2)
        parent = AsyncFlow(config=Config(storage=storage), workflow_id="changed")
        parent.task.add(step=before)
        parent.task.add(step=child, key="sub")
        return parent

    await build().start(resume=True)
    assert log == ["before", "c1", "c2"]
    failing.clear()
    log.clear()
    value["now"] = "y"
    parent = build()
    await parent.start(resume=True, rerun_from="before")
    assert log == ["before", "c1", "c2"]  # c1's checkpoint was made from "x"
    assert parent.result_storage() == ["y", "c2(c1(y))"]
    log.clear()
    again = build()
    await again.start(resume=True, rerun_from="sub")
    assert log == []  # the child's records match its input: all restored
    assert again.result_storage() == ["y", "c2(c1(y))"]
