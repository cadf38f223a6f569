"""The edges of durable waits and signals (issue 24), in one process, on every backend.

Wake times a date cannot hold, signals before a first start, to nobody, to a
completed run, after a deadline or too large, what a reader shows once a
signal arrived, and ``reset --from`` a wait. Cross-process checks (the CLI,
kill -9) are in ``tests/test_cli_wait_edges.py``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import anyio
import pytest

import asyncflow
from asyncflow import (
    AsyncFlow,
    CheckpointCorrupt,
    Config,
    ConfigurationError,
    SerializationError,
    TaskStatus,
    TaskTimeout,
    wait,
)
from asyncflow.providers import Storage
from asyncflow.reading import read_latest, read_run
from asyncflow.schedule import ManualClock
from tests._core.test_waits import Log, build, manifest

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
START = dt.datetime(2030, 1, 1, tzinfo=UTC)


async def tamper(storage: Storage, key: str, change: Any) -> None:
    blob = await storage.read(key)
    assert blob is not None
    raw = json.loads(blob.data)
    change(raw)
    await storage.write(key, json.dumps(raw).encode())


# ------------------------------------------------------------------ wake times


@pytest.mark.parametrize(
    "make",
    [
        lambda: wait.sleep(1e12),
        lambda: wait.sleep(dt.timedelta.max),
        lambda: wait.signal("go", timeout=dt.timedelta.max),
        lambda: wait.signal("go", timeout=1e12),
    ],
    ids=["sleep-1e12", "sleep-timedelta-max", "signal-timedelta-max", "signal-1e12"],
)
def test_an_impossible_wake_time_is_refused_when_the_step_is_built(make: Any) -> None:
    with pytest.raises(ConfigurationError, match="over the limit of 100 years"):
        make()


def test_the_longest_wait_is_accepted() -> None:
    assert wait.sleep(dt.timedelta(days=365 * 99)).seconds == 365 * 99 * 86400
    assert wait.signal("go", timeout=dt.timedelta(days=365 * 99)).wait_timeout is not None


async def test_a_clock_past_year_9999_minus_a_wait_is_refused_when_armed(storage: Storage) -> None:
    clock, log = ManualClock(dt.datetime(9999, 6, 1, tzinfo=UTC)), Log()
    flow = build(storage, clock, log, [wait.sleep(dt.timedelta(days=365))])
    with pytest.raises(ConfigurationError, match=r"wake time would be .* past 9999-12-31"):
        await flow.start(on_wait="park")
    assert await storage.read("w/waits/wait.sleep.json") is None  # nothing armed


async def test_an_impossible_wake_time_read_back_is_corrupt_for_that_run_alone(
    storage: Storage,
) -> None:
    clock = ManualClock(START)
    for wid in ("bad", "good"):
        flow = build(storage, clock, Log(), ["a", wait.sleep(60), "b"], wid=wid)
        assert (await flow.start(on_wait="park")).status == "waiting"

    def far(raw: dict[str, Any]) -> None:
        raw["wait"]["wake_at"] = 1e300

    await tamper(storage, "bad/waits/wait.sleep.json", far)
    await clock.advance(dt.timedelta(seconds=60))
    bad = build(storage, clock, Log(), ["a", wait.sleep(60), "b"], wid="bad")
    with pytest.raises(CheckpointCorrupt, match="not a time before 9999"):
        await bad.start(resume=True, on_wait="park")
    good = build(storage, clock, Log(), ["a", wait.sleep(60), "b"], wid="good")
    assert (await good.start(resume=True, on_wait="park")).status == "completed"


async def test_a_reader_marks_an_impossible_wake_time_instead_of_failing(
    storage: Storage,
) -> None:
    clock = ManualClock(START)
    flow = build(storage, clock, Log(), ["a", wait.sleep(60)])
    await flow.start(on_wait="park")

    def far(raw: dict[str, Any]) -> None:
        raw["due_at"] = 1e300
        raw["waiting"]["wait.sleep"]["wake_at"] = 1e300

    await tamper(storage, "w/run.json", far)
    for read in (read_run, read_latest):
        state = await read(storage, "w")
        assert state is not None
        assert state.status == "waiting"
        assert state.due_at is None
        assert any("invalid due time 1e+300" in note for note in state.problems)
        (shown,) = state.waits
        assert shown.due_at is None
        assert shown.problem is not None
        assert "invalid wake time 1e+300" in shown.text


# ---------------------------------------------------------------------- signals


async def test_a_signal_sent_before_the_first_start_is_kept_by_a_fresh_start(
    storage: Storage,
) -> None:
    clock, log = ManualClock(START), Log()
    with pytest.raises(ConfigurationError, match="before_start=True"):
        await asyncflow.signal(storage, "w", "go", 1)
    assert await storage.read("w/signals/go.json") is None
    await asyncflow.signal(storage, "w", "go", {"by": "alice"}, before_start=True)
    flow = build(storage, clock, log, [wait.signal("go"), "b"])
    await flow.start(on_wait="park")  # fresh: resume=False
    assert flow.status == "completed"
    assert log.inputs["b"] == {"by": "alice"}

    await flow.start(on_wait="park")  # a later fresh start: a new execution, no old signal
    assert flow.status == "waiting"
    assert await storage.read("w/signals/go.json") is None


async def test_a_signal_to_no_workflow_is_refused_with_a_suggestion(storage: Storage) -> None:
    clock = ManualClock(START)
    await build(storage, clock, Log(), [wait.signal("go")], wid="refund-42").start(on_wait="park")
    with pytest.raises(
        ConfigurationError, match=r"no workflow refund-24 \(did you mean 'refund-42'"
    ):
        await asyncflow.signal(storage, "refund-24", "go")
    assert await storage.read("refund-24/signals/go.json") is None


async def test_a_signal_to_a_completed_run_is_refused_but_a_failed_one_takes_it(
    storage: Storage,
) -> None:
    clock = ManualClock(START)
    await build(storage, clock, Log(), ["a"], wid="done").start()
    with pytest.raises(ConfigurationError, match="done has completed"):
        await asyncflow.signal(storage, "done", "go")
    with pytest.raises(ConfigurationError, match="done has completed"):
        await asyncflow.signal(storage, "done", "go", before_start=True)  # it has started
    assert await storage.read("done/signals/go.json") is None

    broken = build(storage, clock, Log(), ["a"], wid="broken")

    @asyncflow.action
    async def boom() -> None:
        raise RuntimeError("boom")

    broken.task.add(step=boom)
    await broken.start()
    assert broken.status == "failed"
    await asyncflow.signal(storage, "broken", "go", 1)  # a resume may still reach a wait
    assert await storage.read("broken/signals/go.json") is not None


async def test_a_signal_after_the_deadline_times_the_wait_out_even_resumed_late(
    storage: Storage,
) -> None:
    # The clock says 2020: the deadline is long past when the (wall clock) signal is sent.
    clock = ManualClock(dt.datetime(2020, 1, 1, tzinfo=UTC))
    steps: list[Any] = [wait.signal("go", timeout=60), "b"]
    first = build(storage, clock, Log(), steps)
    assert (await first.start(on_wait="park")).status == "waiting"
    await asyncflow.signal(storage, "w", "go", "late")
    late = build(storage, clock, Log(), steps)  # the clock has not even reached the deadline
    await late.start(resume=True, on_wait="park")
    assert late.status == "failed"
    error = late.result_task()[0].error
    assert isinstance(error, TaskTimeout)
    assert "after the deadline" in str(error)


async def test_a_signal_sent_in_time_completes_a_wait_resumed_after_its_deadline(
    storage: Storage,
) -> None:
    clock, log = ManualClock(dt.datetime(2100, 1, 1, tzinfo=UTC)), Log()
    steps: list[Any] = [wait.signal("go", timeout=60), "b"]
    assert (await build(storage, clock, log, steps).start(on_wait="park")).status == "waiting"
    await asyncflow.signal(storage, "w", "go", "in time")  # sent now: decades before the deadline
    await clock.advance(dt.timedelta(days=1))  # the worker was down for a day
    done = await build(storage, clock, log, steps).start(resume=True, on_wait="park")
    assert done.status == "completed"
    assert log.inputs["b"] == "in time"


async def test_a_payload_over_the_limit_is_refused_when_sent(storage: Storage) -> None:
    clock = ManualClock(START)
    await build(storage, clock, Log(), [wait.signal("go")]).start(on_wait="park")
    with pytest.raises(SerializationError, match="over the limit of 100"):
        await asyncflow.signal(storage, "w", "go", "x" * 200, max_bytes=100)
    assert await storage.read("w/signals/go.json") is None
    await asyncflow.signal(storage, "w", "go", "x" * 50, max_bytes=100)


async def test_a_flow_whose_limit_the_sender_names_never_fails_on_its_signal(
    storage: Storage,
) -> None:
    clock, log = ManualClock(START), Log()
    config = Config(storage=storage, clock=clock, max_output_bytes=1000)
    flow = AsyncFlow(config=config, workflow_id="small")
    flow.task.add(step=wait.signal("go"))
    flow.task.add(step=log.step("b"))
    await flow.start(on_wait="park")
    with pytest.raises(SerializationError):
        await asyncflow.signal(storage, "small", "go", "x" * 2000, max_bytes=1000)
    await asyncflow.signal(storage, "small", "go", "ok", max_bytes=1000)
    assert (await flow.start(resume=True, on_wait="park")).status == "completed"


async def test_a_reader_says_a_signal_arrived_and_the_next_resume_consumes_it(
    storage: Storage,
) -> None:
    clock = ManualClock(START)
    await build(storage, clock, Log(), [wait.signal("approval", timeout=3600)]).start(
        on_wait="park"
    )
    state = await read_run(storage, "w")
    assert state is not None
    (before,) = state.waits
    assert before.received_at is None
    assert before.signal == "approval"
    await asyncflow.signal(storage, "w", "approval", True)
    for read in (read_run, read_latest):
        state = await read(storage, "w")
        assert state is not None
        assert state.status == "waiting"
        (after,) = state.waits
        assert after.received_at is not None
        assert not after.late
        assert after.text.startswith("signal approval received at ")
        assert after.text.endswith("; the next resume consumes it")


async def test_reset_from_a_wait_rearms_it_and_discards_the_signal_it_consumed(
    storage: Storage,
) -> None:
    clock, log = ManualClock(START), Log()
    steps: list[Any] = ["a", wait.signal("approve"), "b"]
    assert (await build(storage, clock, log, steps).start(on_wait="park")).status == "waiting"
    await asyncflow.signal(storage, "w", "approve", "first")
    done = await build(storage, clock, log, steps).start(resume=True, on_wait="park")
    assert done.status == "completed"
    assert log.inputs["b"] == "first"

    assert await asyncflow.reset(storage, "w", "wait.signal.approve") == [
        "wait.signal.approve",
        "b",
    ]
    assert await storage.read("w/waits/wait.signal.approve.json") is None
    assert await storage.read("w/signals/approve.json") is None
    again = await build(storage, clock, log, steps).start(resume=True, on_wait="park")
    assert again.status == "waiting"  # it asks again
    await asyncflow.signal(storage, "w", "approve", "second")
    final = await build(storage, clock, log, steps).start(resume=True, on_wait="park")
    assert final.status == "completed"
    assert log.inputs["b"] == "second"


async def test_rerun_from_a_sleep_counts_it_from_the_new_run(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()
    steps: list[Any] = [wait.sleep(60), "b"]
    await build(storage, clock, log, steps).start(on_wait="park")
    await clock.advance(dt.timedelta(seconds=60))
    assert (await build(storage, clock, log, steps).start(resume=True)).status == "completed"
    rerun = await build(storage, clock, log, steps).start(
        resume=True, on_wait="park", rerun_from="wait.sleep"
    )
    assert rerun.status == "waiting"  # armed anew: 60 s from now, not from the first run
    assert (await manifest(storage))["due_at"] == (START + dt.timedelta(seconds=120)).timestamp()


# --------------------------------------------------------------- parking everywhere


async def test_mapped_waits_park_instead_of_failing_the_map(storage: Storage) -> None:
    clock = ManualClock(START)
    seen: list[Any] = []

    @asyncflow.action
    async def items() -> list[int]:
        return [1, 2, 3]

    @asyncflow.action
    async def total(previous_context: asyncflow.Context) -> int:
        seen.append(previous_context.storage)
        return len(previous_context.storage)

    def flow() -> AsyncFlow:
        made = AsyncFlow(config=Config(storage=storage, clock=clock), workflow_id="w")
        made.task.add(step=items, key="items")
        made.task.map(wait.sleep(60), over="items", key="nap")
        made.task.add(step=total, key="total", depends_on="nap")
        return made

    first = await flow().start(on_wait="park")
    assert first.status == "waiting"
    assert first.result_task()[1].status is TaskStatus.WAITING
    record = await manifest(storage)
    assert sorted(record["waiting"]) == ["nap.0", "nap.1", "nap.2"]
    assert record["outcomes"]["nap"] == "waiting"
    await clock.advance(dt.timedelta(seconds=60))
    done = await flow().start(resume=True, on_wait="park")
    assert done.status == "completed"
    wake = START + dt.timedelta(seconds=60)
    assert seen == [[wake, wake, wake]]


async def test_a_wait_inside_a_child_flow_parks_the_parent(storage: Storage) -> None:
    clock, log = ManualClock(START), Log()

    def parent() -> AsyncFlow:
        child = AsyncFlow()
        child.task.add(step=log.step("prepare"))
        child.task.add(step=wait.signal("approval"))
        made = AsyncFlow(config=Config(storage=storage, clock=clock), workflow_id="p")
        made.task.add(step=child, key="review")
        made.task.add(step=log.step("after"))
        return made

    with anyio.fail_after(10):  # it used to block forever
        first = await parent().start(on_wait="park")
    assert first.status == "waiting"
    assert first.result_task()[0].status is TaskStatus.WAITING
    record = await manifest(storage, "p")
    spec = record["waiting"]["review/wait.signal.approval"]
    assert spec["signal"] == "approval"
    assert spec["workflow"] == "p.review"
    assert (await manifest(storage, "p.review"))["status"] == "waiting"

    worker = asyncflow.Worker(lambda wid: parent(), storage=storage, clock=clock)
    assert await worker.run_once() == []  # not due: no signal yet
    await asyncflow.signal(storage, "p.review", "approval", "yes")
    assert await worker.run_once() == ["p"]
    assert (await manifest(storage, "p"))["status"] == "completed"
    assert log.inputs["after"] == "yes"
