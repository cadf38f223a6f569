"""Cron scheduling, tick by tick, on a ``ManualClock``: no real minute ever passes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncflow
from asyncflow import AsyncFlow, Config, ConfigurationError, action, wait
from asyncflow._kernel.layout import manifest_key, task_prefix, task_storage_key
from asyncflow._kernel.lease import Lease
from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import StorageDefault
from asyncflow.reading import read_manifest
from asyncflow.schedule import ManualClock, Scheduler, WallClock, clone_flow

pytestmark = pytest.mark.anyio

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
EVERY_MINUTE = "* * * * *"


def at(minute: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


async def until(condition: Callable[[], bool], turns: int = 20_000) -> None:
    for _ in range(turns):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never became true")


class Gate:
    """Steps wait here until the test releases them; records who started."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._event = anyio.Event()

    async def wait(self, who: str) -> None:
        self.started.append(who)
        await self._event.wait()

    def release(self) -> None:
        self._event.set()
        self._event = anyio.Event()


def gated_flow(gate: Gate, storage: StorageDefault | None = None) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage or StorageDefault()), workflow_id="wf")

    @action
    async def work(previous_context: Any) -> str:
        await gate.wait(previous_context.workflow_id)
        return "done"

    flow.task.add(step=work)
    return flow


def actions(scheduler: Scheduler) -> list[tuple[int, str]]:
    return [(int((t.at - T0).total_seconds() // 60), t.action) for t in scheduler.ticks]


async def test_skip_drops_a_tick_while_a_run_is_active_and_later_ticks_run_again() -> None:
    gate = Gate()
    flow = gated_flow(gate)
    clock = ManualClock(T0)
    scheduler = Scheduler(flow, EVERY_MINUTE, overlap="skip", clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        assert clock.sleepers == 1  # waiting for 12:01, nothing ran yet
        assert gate.started == []

        await clock.set(at(1))
        await until(lambda: len(gate.started) == 1)
        await clock.set(at(2))  # the 12:01 run is still going on
        assert actions(scheduler) == [(1, "run"), (2, "skip")]
        assert "a run is active" in scheduler.ticks[-1].reason
        assert len(gate.started) == 1

        gate.release()
        await until(lambda: not scheduler.active)
        await clock.set(at(3))  # a repeated tick really runs (start() is not idempotent)
        await until(lambda: len(gate.started) == 2)
        gate.release()
        await until(lambda: not scheduler.active)
        group.cancel_scope.cancel()
    assert actions(scheduler) == [(1, "run"), (2, "skip"), (3, "run")]
    assert [(r.tick, r.status, r.resumed) for r in scheduler.runs] == [
        (at(1), "completed", False),
        (at(3), "completed", False),
    ]
    assert flow.status == "new"  # the template is never run itself
    assert {r.workflow_id for r in scheduler.runs} == {"wf"}


async def test_queue_keeps_one_pending_tick_and_runs_it_when_the_active_run_ends() -> None:
    gate = Gate()
    clock = ManualClock(T0)
    scheduler = Scheduler(gated_flow(gate), EVERY_MINUTE, overlap="queue", clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(1))
        await until(lambda: len(gate.started) == 1)
        await clock.set(at(2))
        assert scheduler.pending == at(2)
        await clock.set(at(3))  # one is already queued: dropped
        assert actions(scheduler) == [(1, "run"), (2, "queue"), (3, "skip")]
        assert "already queued" in scheduler.ticks[-1].reason

        gate.release()  # the 12:01 run ends, the queued 12:02 one starts at once
        await until(lambda: len(gate.started) == 2)
        assert scheduler.pending is None
        assert [r.tick for r in scheduler.active] == [at(2)]
        gate.release()
        await until(lambda: not scheduler.active)
        group.cancel_scope.cancel()
    assert [(r.tick, r.status) for r in scheduler.runs] == [
        (at(1), "completed"),
        (at(2), "completed"),
    ]


async def test_parallel_runs_overlap_under_ids_derived_from_the_tick_up_to_max_parallel() -> None:
    gate = Gate()
    storage = StorageDefault()
    clock = ManualClock(T0)
    scheduler = Scheduler(
        gated_flow(gate, storage), EVERY_MINUTE, overlap="parallel", max_parallel=2, clock=clock
    )
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(1))
        await clock.set(at(2))
        await until(lambda: len(gate.started) == 2)
        await clock.set(at(3))  # two are active: the bound
        assert actions(scheduler) == [(1, "run"), (2, "run"), (3, "skip")]
        assert "max_parallel" in scheduler.ticks[-1].reason
        gate.release()
        await until(lambda: not scheduler.active)
        await clock.set(at(4))
        await until(lambda: len(gate.started) == 3)
        gate.release()
        await until(lambda: not scheduler.active)
        group.cancel_scope.cancel()
    ids = ["wf.20260101T1201Z", "wf.20260101T1202Z", "wf.20260101T1204Z"]
    assert sorted(gate.started) == ids  # each run saw its own workflow id
    assert [(r.workflow_id, r.status) for r in scheduler.runs] == [(i, "completed") for i in ids]
    for workflow_id in ids:
        blob = await storage.read(manifest_key(workflow_id))
        assert blob is not None
        assert Manifest.decode(blob.data, "run.json").status == "completed"


def failing_once_flow(calls: dict[str, int], storage: StorageDefault) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="etl")

    @action
    async def extract() -> int:
        calls["extract"] += 1
        return calls["extract"]

    @action
    async def load(previous_context: Any) -> int:
        calls["load"] += 1
        if calls["load"] == 1:
            raise RuntimeError("the warehouse is down")
        return int(previous_context.storage)

    flow.task.add(step=extract)
    flow.task.add(step=load)
    return flow


async def test_resume_true_resumes_a_failed_run_and_a_completed_one_starts_over() -> None:
    calls = {"extract": 0, "load": 0}
    storage = StorageDefault()
    clock = ManualClock(T0)
    scheduler = Scheduler(failing_once_flow(calls, storage), EVERY_MINUTE, clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        for minute in (1, 2, 3):
            await clock.set(at(minute))
            await until(lambda m=minute: len(scheduler.runs) == m and not scheduler.active)
        group.cancel_scope.cancel()
    assert [(r.status, r.resumed) for r in scheduler.runs] == [
        ("failed", False),
        ("completed", True),  # extract restored from its checkpoint, load ran
        ("completed", False),  # the previous run completed: a fresh run
    ]
    assert calls == {"extract": 2, "load": 3}
    resumed = scheduler.runs[1].flow
    assert resumed is not None
    assert [t.restored for t in resumed.result_task()] == [True, False]
    assert resumed.result_storage() == [1, 1]


async def test_resume_false_starts_every_tick_over() -> None:
    calls = {"extract": 0, "load": 0}
    clock = ManualClock(T0)
    flow = failing_once_flow(calls, StorageDefault())
    scheduler = Scheduler(flow, EVERY_MINUTE, resume=False, clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        for minute in (1, 2):
            await clock.set(at(minute))
            await until(lambda m=minute: len(scheduler.runs) == m and not scheduler.active)
        group.cancel_scope.cancel()
    assert [(r.status, r.resumed) for r in scheduler.runs] == [
        ("failed", False),
        ("completed", False),
    ]
    assert calls == {"extract": 2, "load": 2}


async def test_cancelling_the_schedule_cancels_in_flight_runs_and_the_next_one_resumes() -> None:
    storage = StorageDefault()
    gate = Gate()
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="wf")
    done: list[str] = []

    @action
    async def first() -> str:
        done.append("first")
        return "one"

    @action
    async def second() -> str:
        await gate.wait("second")
        done.append("second")
        return "two"

    flow.task.add(step=first)
    flow.task.add(step=second)
    clock = ManualClock(T0)
    scheduler = Scheduler(flow, EVERY_MINUTE, clock=clock)  # grace=0: cancel at once
    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as group:
            group.start_soon(scheduler.run)
            await until(lambda: clock.sleepers == 1)
            await clock.set(at(1))
            await until(lambda: len(gate.started) == 1)
            outer.cancel()
    assert scheduler.runs[0].status == "cancelled"
    first_key = flow.task.queue[0].key  # derived from the step's name
    assert await storage.read(task_storage_key("wf", first_key)) is not None  # checkpoint kept

    again = Scheduler(flow, EVERY_MINUTE, clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(again.run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(2))
        await until(lambda: len(gate.started) == 2)
        gate.release()
        await until(lambda: not again.active)
        group.cancel_scope.cancel()
    assert (again.runs[0].status, again.runs[0].resumed) == ("completed", True)
    assert done == ["first", "second"]  # first was restored, not re-run


async def test_stop_with_grace_lets_the_in_flight_run_finish_and_drops_the_queued_tick() -> None:
    gate = Gate()
    clock = ManualClock(T0)
    scheduler = Scheduler(gated_flow(gate), EVERY_MINUTE, overlap="queue", grace=None, clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(1))
        await until(lambda: len(gate.started) == 1)
        await clock.set(at(2))
        assert scheduler.pending == at(2)
        scheduler.stop()
        await until(lambda: clock.sleepers == 0)
        assert scheduler.pending is None  # dropped
        assert len(scheduler.active) == 1  # still going on
        gate.release()
    # run() returned on its own once the run finished
    assert [(r.tick, r.status) for r in scheduler.runs] == [(at(1), "completed")]
    assert gate.started == ["wf"]


async def test_stop_with_a_grace_period_cancels_a_run_that_outlasts_it() -> None:
    gate = Gate()
    scheduler = Scheduler(gated_flow(gate), EVERY_MINUTE, grace=0.05, clock=ManualClock(T0))
    clock = scheduler.clock
    assert isinstance(clock, ManualClock)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(1))
        await until(lambda: len(gate.started) == 1)
        scheduler.stop()
    assert scheduler.runs[0].status == "cancelled"


async def test_a_late_tick_fires_once_and_missed_ticks_are_not_replayed() -> None:
    gate = Gate()
    clock = ManualClock(T0)
    scheduler = Scheduler(gated_flow(gate), "*/5 * * * *", clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(17))  # 12:05, 12:10, 12:15 all due
        gate.release()
        await until(lambda: not scheduler.active and bool(scheduler.runs))
        assert scheduler.next_tick() == at(20)
        await clock.set(at(20))
        await until(lambda: len(gate.started) == 2)
        gate.release()
        await until(lambda: not scheduler.active)
        group.cancel_scope.cancel()
    assert actions(scheduler) == [(5, "run"), (20, "run")]


async def test_a_tick_whose_workflow_is_locked_by_another_runner_is_not_run() -> None:
    gate = Gate()
    storage = StorageDefault()
    clock = ManualClock(T0)
    scheduler = Scheduler(gated_flow(gate, storage), EVERY_MINUTE, clock=clock)
    other = Lease(storage, "wf", ttl=60.0, renew_every=20.0)
    await other.acquire()
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(1))
        await until(lambda: not scheduler.active)
        await other.release()
        await clock.set(at(2))
        await until(lambda: len(gate.started) == 1)
        gate.release()
        await until(lambda: not scheduler.active)
        group.cancel_scope.cancel()
    assert [r.status for r in scheduler.runs] == ["locked", "completed"]
    assert gate.started == ["wf"]


async def test_flow_schedule_runs_until_cancelled() -> None:
    gate = Gate()
    flow = gated_flow(gate)
    clock = ManualClock(T0)
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: flow.schedule(EVERY_MINUTE, overlap="queue", clock=clock))
        await until(lambda: clock.sleepers == 1)
        for minute in (1, 2, 3):
            await clock.set(at(minute))
            await until(lambda m=minute: len(gate.started) == m)
            gate.release()
        group.cancel_scope.cancel()
    assert gate.started == ["wf", "wf", "wf"]


async def test_a_configuration_error_in_a_run_stops_the_scheduler_with_it() -> None:
    flow = AsyncFlow(workflow_id="wf")
    flow.task.add(step=lambda: None)
    clock = ManualClock(T0)
    scheduler = Scheduler(flow, EVERY_MINUTE, clock=clock, max_concurrency=1)
    scheduler._start_options["on_input_change"] = "bogus"  # what a bad option would do
    raised: list[BaseException] = []

    async def run() -> None:
        try:
            await scheduler.run()
        except ConfigurationError as exc:
            raised.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(1))
        await until(lambda: bool(raised))
    assert "on_input_change" in str(raised[0])
    assert scheduler.runs[0].status == "error"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "every minute"}, "cron"),
        ({"overlap": "merge"}, "overlap"),
        ({"max_parallel": 0}, "max_parallel"),
        ({"mode": "background"}, "mode"),
        ({"grace": -1}, "grace"),
        ({"on_input_change": "merge"}, "on_input_change"),
        ({"clock": object()}, "clock"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"cron": EVERY_MINUTE, **kwargs}
    with pytest.raises(ConfigurationError, match=message):
        Scheduler(AsyncFlow(), **options)


def test_a_derived_workflow_id_too_long_is_refused_up_front() -> None:
    flow = AsyncFlow(workflow_id="x" * 120)
    with pytest.raises(ConfigurationError, match="scheduled workflow id"):
        Scheduler(flow, EVERY_MINUTE, overlap="parallel")
    Scheduler(flow, EVERY_MINUTE, overlap="skip")  # the id itself is used as is


def test_cron_with_seconds_and_timezones() -> None:
    flow = AsyncFlow(workflow_id="wf")
    scheduler = Scheduler(flow, "* * * * * */20", overlap="parallel", clock=ManualClock(T0))
    assert scheduler.next_tick() == T0 + dt.timedelta(seconds=20)
    assert scheduler.run_id(T0 + dt.timedelta(seconds=20)) == "wf.20260101T120020Z"
    paris = dt.timezone(dt.timedelta(hours=1))
    daily = Scheduler(flow, "0 2 * * *", tz=paris, clock=ManualClock(T0))
    assert daily.next_tick() == dt.datetime(2026, 1, 2, 1, 0, tzinfo=dt.timezone.utc)


def test_clone_flow_copies_tasks_and_config() -> None:
    flow = AsyncFlow(workflow_id="wf")
    flow.task.add(step=lambda: 1, key="a", initial_context={"x": 1}, group_name="g")
    copy = clone_flow(flow, "other")
    assert copy.workflow_id == "other"
    assert copy.config is flow.config
    assert [(t.key, t.group_name, t.initial_context.storage) for t in copy.task.queue] == [
        ("a", "g", {"x": 1})
    ]


async def test_wall_clock_sleeps_until_the_time() -> None:
    clock = WallClock()
    before = clock.now()
    assert before.tzinfo is not None
    await clock.sleep_until(before - dt.timedelta(seconds=5))  # past: at once
    await clock.sleep_until(clock.now() + dt.timedelta(milliseconds=30))
    assert (clock.now() - before).total_seconds() >= 0.03


def test_manual_clock_refuses_naive_times_and_going_back() -> None:
    with pytest.raises(ConfigurationError):
        ManualClock(dt.datetime(2026, 1, 1))
    clock = ManualClock(T0)
    with pytest.raises(ValueError, match="back"):
        anyio.run(clock.set, T0 - dt.timedelta(seconds=1))


async def test_a_scheduled_graph_flow_keeps_its_dependencies_and_maps() -> None:
    storage = StorageDefault()

    @action
    async def items() -> list[int]:
        return [1, 2, 3]

    @action
    async def double(initial_context: Any) -> int:
        return 2 * initial_context.storage

    @action
    async def total(previous_context: Any) -> int:
        return sum(previous_context.storage)

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="g")
    flow.task.add(step=items)
    flow.task.map(double, over="items", key="double", max_concurrency=2)
    flow.task.add(step=total, depends_on="double")
    clone = clone_flow(flow, "g2")
    assert [(t.key, t.kind, t.depends_on, t.over, t.limit) for t in clone.task.queue] == [
        (t.key, t.kind, t.depends_on, t.over, t.limit) for t in flow.task.queue
    ]
    clock = ManualClock(T0)
    scheduler = Scheduler(flow, EVERY_MINUTE, mode="graph", clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(1))
        await until(lambda: len(scheduler.runs) == 1 and not scheduler.active)
        group.cancel_scope.cancel()
    assert [r.status for r in scheduler.runs] == ["completed"]
    assert await storage.read(task_storage_key("g", "double.2")) is not None
    blob = await storage.read(task_storage_key("g", "total"))
    assert blob is not None
    assert b'"output":12' in blob.data


def approval_flow(calls: list[str], storage: StorageDefault, workflow_id: str = "wf") -> AsyncFlow:
    """``before``, then a durable wait for the signal ``go``, then ``after``."""
    flow = AsyncFlow(config=Config(storage=storage, signal_poll=0.01), workflow_id=workflow_id)

    @action
    async def before() -> str:
        calls.append("before")
        return "asked"

    @action
    async def after(previous_context: Any) -> str:
        calls.append("after")
        return f"approved by {previous_context.storage['by']}"

    flow.task.add(step=before)
    flow.task.add(step=wait.signal("go"), key="go")
    flow.task.add(step=after)
    return flow


async def manifest_of(storage: StorageDefault, workflow_id: str) -> Manifest:
    manifest = await read_manifest(storage, workflow_id)
    assert manifest is not None
    return manifest


async def tick_once(scheduler: Scheduler, clock: ManualClock, minute: int = 1) -> None:
    """Run the scheduler until the tick of ``minute`` has run to its end."""
    with anyio.fail_after(5):  # a wiped wait would block on a signal deleted with it
        async with anyio.create_task_group() as group:
            group.start_soon(scheduler.run)
            await until(lambda: clock.sleepers == 1)
            await clock.set(at(minute))
            while not scheduler.runs or scheduler.active:
                await anyio.sleep(0.01)
            group.cancel_scope.cancel()


@pytest.mark.parametrize("resume", [True, False])
@pytest.mark.parametrize("overlap", ["skip", "parallel"])
async def test_a_tick_finding_its_run_waiting_resumes_it_and_never_wipes_it(
    resume: bool, overlap: str
) -> None:
    storage = StorageDefault()
    calls: list[str] = []
    template = approval_flow(calls, storage)
    clock = ManualClock(T0)
    scheduler = Scheduler(template, EVERY_MINUTE, overlap=overlap, resume=resume, clock=clock)  # type: ignore[arg-type]
    workflow_id = scheduler.run_id(at(1))  # the id the 12:01 tick runs under
    parked = await clone_flow(template, workflow_id).start(on_wait="park")
    assert parked.status == "waiting"
    await asyncflow.signal(storage, workflow_id, "go", {"by": "alice"})
    await tick_once(scheduler, clock)
    run = scheduler.runs[0]
    assert (run.workflow_id, run.status, run.resumed) == (workflow_id, "completed", True)
    assert calls == ["before", "after"]  # before restored, the signal kept
    assert run.flow is not None
    assert run.flow.result_storage()[-1] == "approved by alice"


async def test_a_tick_finding_its_run_waiting_keeps_the_armed_wait_until_the_signal() -> None:
    storage = StorageDefault()
    calls: list[str] = []
    template = approval_flow(calls, storage)
    clock = ManualClock(T0)
    scheduler = Scheduler(template, EVERY_MINUTE, clock=clock)
    await clone_flow(template, "wf").start(on_wait="park")
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await until(lambda: clock.sleepers == 1)
        await clock.set(at(1))
        await until(lambda: bool(scheduler.active))
        assert (await manifest_of(storage, "wf")).status == "running"  # resumed, blocking
        await clock.set(at(2))
        assert actions(scheduler) == [(1, "run"), (2, "skip")]  # the waiting run is active
        with anyio.fail_after(10):
            await asyncflow.signal(storage, "wf", "go", {"by": "bob"})
            while scheduler.active:
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    assert [(r.status, r.resumed) for r in scheduler.runs] == [("completed", True)]
    assert calls == ["before", "after"]


async def test_a_tick_finding_its_run_crashed_in_a_wait_resumes_it_with_the_wait_armed() -> None:
    storage = StorageDefault()
    calls: list[str] = []
    template = approval_flow(calls, storage)
    clock = ManualClock(T0)
    scheduler = Scheduler(template, EVERY_MINUTE, clock=clock)
    await clone_flow(template, "wf").start(on_wait="park")
    # as a runner blocked in the wait and killed leaves it: "running", no live lease
    crashed = (await manifest_of(storage, "wf")).replace(status="running", waiting={})
    await storage.write(manifest_key("wf"), crashed.encode())
    await asyncflow.signal(storage, "wf", "go", {"by": "carol"})
    await tick_once(scheduler, clock)
    assert [(r.status, r.resumed) for r in scheduler.runs] == [("completed", True)]
    assert calls == ["before", "after"]


async def test_a_tick_finding_its_run_reset_resumes_it() -> None:
    calls = {"extract": 0, "load": 1}  # load succeeds from the start
    storage = StorageDefault()
    template = failing_once_flow(calls, storage)
    await clone_flow(template, "etl").start()
    assert await asyncflow.reset(storage, "etl", template.task.queue[1].key)
    clock = ManualClock(T0)
    scheduler = Scheduler(template, EVERY_MINUTE, clock=clock)
    await tick_once(scheduler, clock)
    assert [(r.status, r.resumed) for r in scheduler.runs] == [("completed", True)]
    assert calls == {"extract": 1, "load": 3}  # only the reset task re-ran


@pytest.mark.parametrize("resume", [True, False])
async def test_a_parallel_tick_that_already_completed_is_not_run_again(resume: bool) -> None:
    """Two schedulers (or one restarted in the same minute) meet the same tick's own id."""
    calls = {"extract": 0, "load": 1}
    storage = StorageDefault()
    template = failing_once_flow(calls, storage)
    runs = []
    for _ in range(2):
        clock = ManualClock(T0)
        scheduler = Scheduler(
            template, EVERY_MINUTE, overlap="parallel", resume=resume, clock=clock
        )
        await tick_once(scheduler, clock)
        runs.extend(scheduler.runs)
    workflow_id = runs[0].workflow_id
    assert [(r.workflow_id, r.status) for r in runs] == [
        (workflow_id, "completed"),
        (workflow_id, "done"),
    ]
    assert calls == {"extract": 1, "load": 2}  # ran once, by the first
    records = [k async for k in storage.list(task_prefix(workflow_id))]
    assert len(records) == 2  # its checkpoints were kept, not cleared for a new run
