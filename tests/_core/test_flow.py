"""Behaviour of a flow run: modes, contexts, callbacks, results. Every storage backend."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from asyncflow import (
    AsyncFlow,
    Config,
    ConfigurationError,
    Context,
    SerializationError,
    TaskFailed,
    TaskStatus,
    action,
)
from asyncflow.providers import Storage

pytestmark = pytest.mark.anyio


def make_flow(storage: Storage, workflow_id: str = "wf") -> AsyncFlow:
    return AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)


@action
async def one() -> dict[str, bool]:
    return {"extracted": True}


@action
async def two(previous_context: Context) -> dict[str, Any]:
    return {"transformed": previous_context.storage}


@action
def three(previous_context: Context) -> dict[str, Any]:
    return {"loaded": previous_context.storage}


async def test_sequential_chains_outputs(storage: Storage) -> None:
    flow = make_flow(storage)
    flow.task.add(step=one)
    flow.task.add(step=two)
    flow.task.add(step=three)
    await flow.start()
    assert flow.result_storage() == [
        {"extracted": True},
        {"transformed": {"extracted": True}},
        {"loaded": {"transformed": {"extracted": True}}},
    ]
    assert [t.status for t in flow.result_task()] == [TaskStatus.COMPLETED] * 3
    assert [c.task_id for c in flow.result_context()] == [0, 1, 2]
    assert [t.key for t in flow.result_task()] == ["one", "two", "three"]


async def test_contexts_injected_only_when_declared(storage: Storage) -> None:
    seen: dict[str, Any] = {}

    @action
    async def both(initial_context: Context, previous_context: Context) -> int:
        seen["both"] = (initial_context.storage, previous_context.storage)
        return 7

    @action
    async def initial_only(initial_context: Context) -> int:
        seen["initial_only"] = initial_context.storage
        return 8

    @action
    async def nothing() -> int:
        return 9

    flow = make_flow(storage)
    flow.task.add(step=both, initial_context={"a": 1})
    flow.task.add(step=initial_only, initial_context=[1, 2])
    flow.task.add(step=nothing)
    await flow.start()
    assert seen == {"both": ({"a": 1}, None), "initial_only": [1, 2]}
    assert flow.result_storage() == [7, 8, 9]


async def test_lists_none_and_unicode_outputs(storage: Storage) -> None:
    @action
    async def a_list() -> list[Any]:
        return [1, "é", None, [2.5, {"k": "ü"}]]

    @action
    async def nothing(previous_context: Context) -> None:
        assert previous_context.storage == [1, "é", None, [2.5, {"k": "ü"}]]

    flow = make_flow(storage)
    flow.task.add(step=a_list)
    flow.task.add(step=nothing)
    await flow.start()
    assert flow.result_storage() == [[1, "é", None, [2.5, {"k": "ü"}]], None]
    assert flow.result_task()[1].status is TaskStatus.COMPLETED


async def test_failure_stops_chain_and_keep_going_continues(storage: Storage) -> None:
    ran: list[str] = []

    @action
    async def ok() -> int:
        ran.append("ok")
        return 1

    @action
    async def bad() -> int:
        ran.append("bad")
        raise ValueError("nope")

    @action
    async def after(previous_context: Context) -> Any:
        ran.append("after")
        return previous_context.storage

    flow = make_flow(storage)
    flow.task.add(step=[ok, bad, after])
    await flow.start()
    statuses = [t.status for t in flow.result_task()]
    assert statuses == [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.NOT_STARTED]
    assert ran == ["ok", "bad"]
    assert isinstance(flow.result_task()[1].error, ValueError)

    ran.clear()
    await flow.start(keep_going=True)
    assert ran == ["ok", "bad", "after"]
    assert flow.result_task()[2].status is TaskStatus.COMPLETED
    assert flow.result_storage()[2] is None  # previous_context is empty after a failure


async def test_raise_on_failure(storage: Storage) -> None:
    @action
    async def bad() -> None:
        raise KeyError("x")

    flow = make_flow(storage)
    flow.task.add(step=bad)
    with pytest.raises(TaskFailed, match="bad") as info:
        await flow.start(raise_on_failure=True)
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.key == "bad"  # from the name


async def test_callbacks_sync_and_async(storage: Storage) -> None:
    got: list[Any] = []

    async def on_task(task: Any) -> None:
        got.append(("task", task.key, task.status))

    def on_success(tasks: list[Any]) -> None:
        got.append(("success", len(tasks)))

    async def on_failure(tasks: list[Any]) -> None:
        got.append(("failure", [t.status for t in tasks]))

    @action
    async def bad() -> None:
        raise RuntimeError("x")

    flow = make_flow(storage)
    flow.task.add(step=one, callback=on_task)
    await flow.start(on_success=on_success, on_failure=on_failure)
    assert got == [("task", "one", TaskStatus.COMPLETED), ("success", 1)]

    got.clear()
    flow.task.add(step=bad, callback=on_task)
    await flow.start(on_success=on_success, on_failure=on_failure)
    assert got == [
        ("task", "one", TaskStatus.COMPLETED),
        ("task", "bad", TaskStatus.FAILED),
        ("failure", [TaskStatus.COMPLETED, TaskStatus.FAILED]),
    ]


async def test_unencodable_output_fails_step_and_writes_nothing(storage: Storage) -> None:
    class Thing:
        pass

    @action
    async def weird() -> Thing:
        return Thing()

    flow = make_flow(storage)
    flow.task.add(step=one)
    flow.task.add(step=weird)
    await flow.start()
    task = flow.result_task()[1]
    assert task.status is TaskStatus.FAILED
    assert isinstance(task.error, SerializationError)
    assert "weird" in str(task.error)
    assert "Thing" in str(task.error)
    keys = [k async for k in storage.list("wf/tasks/")]
    assert keys == ["wf/tasks/one.json"]


async def test_parallel_each_gets_initial_context(storage: Storage) -> None:
    active = 0
    peak = 0

    @action
    async def square(initial_context: Context, previous_context: Context) -> int:
        nonlocal active, peak
        assert previous_context.storage is None
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.01)
        active -= 1
        value: int = initial_context.storage
        return value * value

    flow = make_flow(storage)
    for i in range(8):
        flow.task.add(step=square, initial_context=i)
    await flow.start(mode="parallel", max_concurrency=3)
    assert flow.result_storage() == [i * i for i in range(8)]
    assert peak == 3


async def test_sequential_group_runs_groups_concurrently(storage: Storage) -> None:
    order: list[str] = []
    both_started = anyio.Event()
    started = 0

    def make(name: str) -> Any:
        @action
        async def step(previous_context: Context) -> str:
            nonlocal started
            if name.endswith("1"):
                started += 1
                if started == 2:
                    both_started.set()
                with anyio.fail_after(5):
                    await both_started.wait()  # would deadlock if groups ran one after another
            order.append(name)
            return f"{previous_context.storage}>{name}"

        return step

    flow = make_flow(storage)
    flow.task.add(step=make("a1"), group_name="a")
    flow.task.add(step=make("b1"), group_name="b")
    flow.task.add(step=make("a2"), group_name="a")
    flow.task.add(step=make("b2"), group_name="b")
    await flow.start(mode="sequential_group")
    assert flow.result_storage() == ["None>a1", "None>b1", "None>a1>a2", "None>b1>b2"]
    assert order.index("a1") < order.index("a2")
    assert order.index("b1") < order.index("b2")

    # sequential with several groups behaves the same
    await flow.start(mode="sequential")
    assert flow.result_storage() == ["None>a1", "None>b1", "None>a1>a2", "None>b1>b2"]


async def test_background_returns_at_once_and_wait_joins(storage: Storage) -> None:
    gate = anyio.Event()

    @action
    async def blocked() -> str:
        await gate.wait()
        return "done"

    flow = make_flow(storage)
    flow.task.add(step=blocked)
    await flow.start(mode="background")
    assert flow.result_task()[0].status is TaskStatus.NOT_STARTED or (
        flow.result_task()[0].status is TaskStatus.IN_PROGRESS
    )
    gate.set()
    with anyio.fail_after(5):
        await flow.wait()
    assert flow.result_storage() == ["done"]


async def test_background_error_is_raised_by_wait(storage: Storage) -> None:
    @action
    async def bad() -> None:
        raise RuntimeError("x")

    flow = make_flow(storage)
    flow.task.add(step=bad)
    await flow.start(mode="background", raise_on_failure=True)
    with anyio.fail_after(5), pytest.raises(TaskFailed):
        await flow.wait()


async def test_start_while_running_is_refused(storage: Storage) -> None:
    gate = anyio.Event()

    @action
    async def blocked() -> None:
        await gate.wait()

    flow = make_flow(storage)
    flow.task.add(step=blocked)
    await flow.start(mode="background")
    with pytest.raises(ConfigurationError, match="already running"):
        await flow.start()
    gate.set()
    with anyio.fail_after(5):
        await flow.wait()


async def test_start_again_reruns(storage: Storage) -> None:
    count = 0

    @action
    async def counted() -> int:
        nonlocal count
        count += 1
        return count

    flow = make_flow(storage)
    flow.task.add(step=counted)
    await flow.start()
    await flow.start()
    assert count == 2
    assert flow.result_storage() == [2]
    await flow.start(resume=True)
    assert count == 2  # resume skips what is done
    assert flow.result_task()[0].restored


async def test_class_based_step_runs_methods_in_source_order(storage: Storage) -> None:
    @action
    class Pipeline:
        def __init__(self, initial_context: Context) -> None:
            self.base = initial_context.storage

        @action
        def zeta(self) -> int:
            return int(self.base)

        @action
        async def alpha(self, previous_context: Context) -> int:
            return int(previous_context.storage) + 1

        def helper(self) -> None:  # not an action: never called
            raise AssertionError

        @action
        def middle(self, previous_context: Context) -> int:
            return int(previous_context.storage) * 10

    flow = make_flow(storage)
    flow.task.add(step=Pipeline, initial_context=4)
    await flow.start()
    assert flow.result_storage() == [[4, 5, 50]]


async def test_plain_function_is_accepted_as_a_step(storage: Storage) -> None:
    async def bare() -> int:
        return 3

    flow = make_flow(storage)
    flow.task.add(step=bare)
    await flow.start()
    assert flow.result_storage() == [3]


async def test_step_returning_context_stores_its_value(storage: Storage) -> None:
    @action
    async def ctx() -> Context:
        return Context(storage={"x": 1})

    flow = make_flow(storage)
    flow.task.add(step=ctx)
    flow.task.add(step=two)
    await flow.start()
    assert flow.result_storage() == [{"x": 1}, {"transformed": {"x": 1}}]


async def test_bad_arguments_are_refused(storage: Storage) -> None:
    flow = make_flow(storage)
    flow.task.add(step=one)
    with pytest.raises(ConfigurationError, match="mode"):
        await flow.start(mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="on_input_change"):
        await flow.start(on_input_change="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        await flow.start(mode="parallel", max_concurrency=0)
    with pytest.raises(ConfigurationError, match="on_success"):
        await flow.start(on_success="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="step must be"):
        flow.task.add(step=42)
    with pytest.raises(ConfigurationError, match="used twice"):
        flow.task.add(step=one, key="one")
    with pytest.raises(ConfigurationError, match="task key"):
        flow.task.add(step=one, key="../up")
    with pytest.raises(ConfigurationError, match="workflow_id"):
        AsyncFlow(config=Config(storage=storage), workflow_id="../../etc")
    with pytest.raises(ConfigurationError, match="config"):
        AsyncFlow(config={"storage": storage})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Storage protocol"):
        Config(storage=object())  # type: ignore[arg-type]


async def test_resume_needs_a_fixed_workflow_id(storage: Storage) -> None:
    flow = AsyncFlow(config=Config(storage=storage))
    flow.task.add(step=one)
    with pytest.raises(ConfigurationError, match="fixed workflow id"):
        await flow.start(resume=True)


async def test_wrong_types_in_the_public_api_are_named(storage: Storage) -> None:
    flow = make_flow(storage)
    flow.task.add(step=one)
    with pytest.raises(ConfigurationError, match="fingerprint"):
        await flow.start(fingerprint=123)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="wait_for_lease"):
        await flow.start(wait_for_lease=-1)
    with pytest.raises(ConfigurationError, match="wait_for_lease"):
        await flow.start(wait_for_lease="soon")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="signing_key"):
        Config(storage=storage, signing_key="secret")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="read_concurrency"):
        Config(storage=storage, read_concurrency=0)
    with pytest.raises(ConfigurationError, match="lease_ttl"):
        Config(storage=storage, lease_ttl=-1)
    with pytest.raises(ConfigurationError, match="lease_renew"):
        Config(storage=storage, lease_ttl=1, lease_renew=2)
    with pytest.raises(ConfigurationError, match="serializer"):
        Config(storage=storage, serializer="json")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="callback"):
        flow.task.add(step=one, callback="print")
    with pytest.raises(ConfigurationError, match="group_name"):
        flow.task.add(step=one, group_name="")
    with pytest.raises(ConfigurationError, match="workflow_id must be a str"):
        AsyncFlow(workflow_id=42)  # type: ignore[arg-type]
    assert flow.result_task()[0].status is TaskStatus.NOT_STARTED  # nothing ran
    assert [k async for k in storage.list("wf/")] == []  # nothing was written
