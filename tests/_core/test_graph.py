"""mode="graph": dependencies, fan-in, failure, validation, task.map; on every backend."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncflow import AsyncFlow, Config, ConfigurationError, Context, TaskStatus, action
from asyncflow._core.graph import _Graph
from asyncflow._core.task import Task
from asyncflow.providers import Storage, StorageDefault

pytestmark = pytest.mark.anyio


class Log:
    """Steps named after their key that log each start and end."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.failing: set[str] = set()
        self.gate: anyio.Event | None = None

    def ran(self) -> list[str]:
        return [name for what, name in self.events if what == "start"]

    def step(self, name: str, *, pause: float = 0) -> Any:
        async def body(previous_context: Context) -> Any:
            self.events.append(("start", name))
            if pause:
                await anyio.sleep(pause)
            self.events.append(("end", name))
            if name in self.failing:
                raise RuntimeError(f"{name} failed")
            return {name: previous_context.storage}

        body.__qualname__ = name
        return action(body)


def flow_of(storage: Storage, workflow_id: str = "graph-wf") -> AsyncFlow:
    return AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)


def diamond(storage: Storage, log: Log, **pause: float) -> AsyncFlow:
    flow = flow_of(storage)
    flow.task.add(step=log.step("top", pause=pause.get("top", 0)))
    flow.task.add(step=log.step("left", pause=pause.get("left", 0)), depends_on="top")
    flow.task.add(step=log.step("right", pause=pause.get("right", 0)), depends_on="top")
    flow.task.add(step=log.step("bottom"), depends_on=["right", "left"])
    return flow


async def test_diamond_fan_out_and_fan_in(storage: Storage) -> None:
    log = Log()
    flow = diamond(storage, log, left=0.05)
    await flow.start(mode="graph")
    assert flow.status == "completed"
    assert log.ran()[0] == "top"
    assert log.ran()[-1] == "bottom"
    bottom = flow.result_storage()[3]
    # several dependencies: {key: output} in depends_on order
    assert list(bottom["bottom"]) == ["right", "left"]
    assert bottom["bottom"]["left"] == {"left": {"top": None}}
    # left and right overlapped: right started before left ended
    assert log.events.index(("start", "right")) < log.events.index(("end", "left"))


async def test_max_concurrency_bounds_tasks_in_flight(storage: Storage) -> None:
    running = 0
    peak = 0

    def make(name: str) -> Any:
        async def body() -> str:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0.01)
            running -= 1
            return name

        body.__qualname__ = name
        return action(body)

    flow = flow_of(storage)
    flow.task.add(step=make("root"))
    for i in range(8):
        flow.task.add(step=make(f"leaf{i}"), depends_on="root")
    await flow.start(mode="graph", max_concurrency=3)
    assert flow.status == "completed"
    assert peak == 3


async def test_a_failure_stops_its_dependents(storage: Storage) -> None:
    log = Log()
    log.failing.add("left")
    flow = diamond(storage, log, right=0.05)
    await flow.start(mode="graph")
    assert flow.status == "failed"
    statuses = [t.status for t in flow.result_task()]
    assert statuses[1] is TaskStatus.FAILED
    assert statuses[2] is TaskStatus.COMPLETED  # already in flight: it finishes
    assert statuses[3] is TaskStatus.NOT_STARTED
    assert "bottom" not in log.ran()

    log.failing.clear()
    log.events.clear()
    await diamond(storage, log).start(mode="graph", resume=True)
    assert log.ran() == ["left", "bottom"]


async def test_keep_going_never_runs_a_task_whose_dependency_failed(storage: Storage) -> None:
    log = Log()
    log.failing.add("left")
    flow = diamond(storage, log)
    flow.task.add(step=log.step("after_left"), depends_on="left")
    flow.task.add(step=log.step("after_right"), depends_on="right")
    flow.task.add(step=log.step("last"), depends_on="after_left")
    await flow.start(mode="graph", keep_going=True)
    assert flow.status == "failed"
    assert "bottom" not in log.ran()
    assert "after_left" not in log.ran()
    tasks = {t.key: t for t in flow.result_task()}
    for key in ("bottom", "after_left", "last"):  # downstream of left, transitively
        assert tasks[key].outcome == "skipped"
        assert tasks[key].skip_reason == "upstream failed"
        assert tasks[key].status is TaskStatus.NOT_STARTED
    assert tasks["after_right"].status is TaskStatus.COMPLETED  # an independent branch goes on


async def test_bad_graphs_are_refused_before_anything_runs(storage: Storage) -> None:
    log = Log()
    flow = flow_of(storage)
    flow.task.add(step=log.step("a"), depends_on="nope")
    with pytest.raises(ConfigurationError, match="'a' depends on 'nope'"):
        await flow.start(mode="graph")

    flow = flow_of(storage)
    flow.task.add(step=log.step("a"), depends_on="c")
    flow.task.add(step=log.step("b"), depends_on="a")
    flow.task.add(step=log.step("c"), depends_on="b")
    flow.task.add(step=log.step("d"))
    with pytest.raises(ConfigurationError, match="cycle: a -> c -> b -> a"):
        await flow.start(mode="graph")

    flow = flow_of(storage)
    flow.task.add(step=log.step("a"))
    flow.task.add(step=log.step("b"), depends_on="a")
    for mode in ("sequential", "parallel", "sequential_group", "background"):
        with pytest.raises(ConfigurationError, match="mode='graph'"):
            await flow.start(mode=mode)  # type: ignore[arg-type]

    flow = flow_of(storage)
    flow.task.add(step=log.step("a"))
    flow.task.map(log.step("m"), over="a", key="m")
    with pytest.raises(ConfigurationError, match=r"task\.map, which needs mode='graph'"):
        await flow.start(mode="parallel")
    flow.task.add(step=log.step("x"), key="m.0")
    with pytest.raises(ConfigurationError, match=r"'m\.0' collides"):
        await flow.start(mode="graph")
    assert log.ran() == []
    assert [k async for k in storage.list("graph-wf/")] == []


def test_not_completed_is_not_failed() -> None:
    """A task that ends neither COMPLETED nor FAILED (a parked wait) holds its
    dependents back without halting the run."""
    from asyncflow._core.bus import EventBus
    from asyncflow._core.runner import Runner

    runner = Runner(workflow_id="w", config=Config(), bus=EventBus(), records={}, keep_going=True)
    flow = AsyncFlow()
    flow.task.add(step=Log().step("a"))
    flow.task.add(step=Log().step("b"), depends_on="a")
    flow.task.add(step=Log().step("c"))
    a, b, c = flow.task.queue
    graph = _Graph(runner, flow.task.queue, None)
    assert list(graph.ready) == [a, c]
    graph.ready.clear()
    a.status = TaskStatus.CANCELLED
    graph.settle(a)
    assert list(graph.ready) == []
    assert not runner.halted
    a.status = TaskStatus.FAILED  # even with keep_going a failure never releases them
    graph.settle(a)
    assert list(graph.ready) == []
    assert b.skip_reason == "upstream failed"
    assert isinstance(b, Task)


# ----------------------------------------------------------------- task.map


async def test_map_fans_out_and_dependents_get_outputs_in_item_order(storage: Storage) -> None:
    seen: list[int] = []

    @action
    async def pages() -> list[int]:
        return [3, 1, 2]

    @action
    async def fetch(initial_context: Context) -> str:
        await anyio.sleep(0.01 * initial_context.storage)  # finish out of order
        seen.append(initial_context.storage)
        return f"page{initial_context.storage}"

    @action
    async def join(previous_context: Context) -> str:
        return ",".join(previous_context.storage)

    flow = flow_of(storage)
    flow.task.add(step=pages)
    flow.task.map(fetch, over="pages", key="fetch")
    flow.task.add(step=join, depends_on="fetch")
    await flow.start(mode="graph")
    assert flow.status == "completed"
    assert seen == [1, 2, 3]
    assert flow.result_storage() == [[3, 1, 2], ["page3", "page1", "page2"], "page3,page1,page2"]
    keys = sorted([k async for k in storage.list("graph-wf/tasks/")])
    names = ["fetch", "fetch.0", "fetch.1", "fetch.2", "join", "pages"]
    assert keys == sorted(f"graph-wf/tasks/{k}.json" for k in names)
    seen.clear()
    await flow.start(mode="graph", resume=True)
    assert seen == []
    assert [t.restored for t in flow.result_task()] == [True, True, True]


async def test_map_over_a_non_list_fails_clearly_and_empty_lists_complete(
    storage: Storage,
) -> None:
    value: Any = {"not": "a list"}

    async def source() -> Any:
        return value

    async def child(initial_context: Context) -> Any:
        return initial_context.storage

    flow = flow_of(storage)
    flow.task.add(step=source)
    flow.task.map(child, over="source", key="each")
    await flow.start(mode="graph")
    task = flow.result_task()[1]
    assert task.status is TaskStatus.FAILED
    assert "'source' returned dict, not a list" in str(task.error)
    value = []
    await flow.start(mode="graph")
    assert flow.result_storage() == [[], []]


async def test_map_keep_going_runs_every_child_and_resume_reruns_the_failed() -> None:
    storage = StorageDefault()
    failing = {2, 5}
    ran: list[int] = []

    async def items() -> list[int]:
        return list(range(8))

    async def work(initial_context: Context) -> int:
        ran.append(initial_context.storage)
        if initial_context.storage in failing:
            raise RuntimeError(f"item {initial_context.storage}")
        return initial_context.storage * 10

    flow = flow_of(storage)
    flow.task.add(step=items)
    flow.task.map(work, over="items", key="work", max_concurrency=2)
    await flow.start(mode="graph", keep_going=True, resume=True)
    task = flow.result_task()[1]
    assert task.status is TaskStatus.FAILED
    assert "2 of 8 children failed; first: work.2" in str(task.error)
    assert sorted(ran) == list(range(8))
    failing.clear()
    ran.clear()
    await flow.start(mode="graph", resume=True)
    assert sorted(ran) == [2, 5]
    assert flow.result_storage()[1] == [i * 10 for i in range(8)]


# ------------------------------------------------------------- random DAGs

dags = st.integers(min_value=1, max_value=9).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] < e[1]),
            max_size=2 * n,
        ),
        st.sets(st.integers(0, n - 1), max_size=3),
        st.sampled_from([None, 1, 2, 4]),
        st.booleans(),
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags)
def test_random_dags_run_in_order_once_and_resume_exactly_the_rest(
    case: tuple[int, list[tuple[int, int]], set[int], int | None, bool],
) -> None:
    n, edges, failing, limit, keep_going = case
    deps = {j: sorted({i for i, k in edges if k == j}) for j in range(n)}
    log = Log()
    log.failing = {f"t{i}" for i in failing}
    storage = StorageDefault()

    def build() -> AsyncFlow:
        flow = flow_of(storage, "dag")
        for j in range(n):
            flow.task.add(
                step=log.step(f"t{j}", pause=0.001 * (j % 3)),
                depends_on=[f"t{i}" for i in deps[j]],
            )
        return flow

    def check_order(events: list[tuple[str, str]], restored: set[str]) -> None:
        ended: set[str] = set(restored)
        starts = [name for what, name in events if what == "start"]
        assert len(starts) == len(set(starts))  # at most once per run
        for what, name in events:
            if what == "start":
                j = int(name[1:])
                # every dependency completed first (never a failed one, keep_going or not)
                assert {f"t{i}" for i in deps[j]} <= ended, (name, deps[j], ended)
            elif name not in log.failing:
                ended.add(name)

    async def scenario() -> None:
        first = build()
        await first.start(mode="graph", resume=True, max_concurrency=limit, keep_going=keep_going)
        check_order(log.events, set())
        skipped: set[str] = set()  # downstream of a failure, keep_going or not
        for j in range(n):  # edges go from lower to higher indices
            if any(f"t{i}" in skipped or i in failing for i in deps[j]):
                skipped.add(f"t{j}")
        if keep_going:  # everything ran once but what lies downstream of a failure
            assert sorted(log.ran()) == sorted({f"t{j}" for j in range(n)} - skipped)
            outcomes = {t.key: t.outcome for t in first.result_task()}
            assert {key for key, o in outcomes.items() if o == "skipped"} == skipped
        done = {t.key for t in first.result_task() if t.status is TaskStatus.COMPLETED}
        log.events.clear()
        log.failing.clear()
        second = build()
        await second.start(mode="graph", resume=True, max_concurrency=limit)
        check_order(log.events, done)
        rerun = set(log.ran())
        without_checkpoint = {f"t{j}" for j in range(n)} - done
        assert rerun == without_checkpoint
        assert second.status == "completed"

    anyio.run(scenario)


async def test_a_maps_callback_is_called_once_when_it_ran() -> None:
    storage = StorageDefault()
    seen: list[tuple[str, TaskStatus]] = []
    fail = [True]

    async def items() -> list[int]:
        return [1, 2]

    async def child(initial_context: Context) -> int:
        if fail[0] and initial_context.storage == 2:
            raise RuntimeError("two")
        return initial_context.storage

    def callback(task: Task) -> None:
        seen.append((task.key, task.status))

    flow = flow_of(storage)
    flow.task.add(step=items)
    flow.task.map(child, over="items", key="each", callback=callback)
    await flow.start(mode="graph", resume=True)
    fail[0] = False
    await flow.start(mode="graph", resume=True)
    await flow.start(mode="graph", resume=True)  # restored: no callback
    assert seen == [("each", TaskStatus.FAILED), ("each", TaskStatus.COMPLETED)]
