"""Typed frozen events, and the bus that fans them out without ever stalling a run."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest

from asyncflow import AsyncFlow, ConfigurationError, action
from asyncflow._core.bus import EventBus, EventStream
from asyncflow.events import (
    CheckpointWritten,
    Event,
    EventsDropped,
    TaskCompleted,
    TaskEvent,
    TaskFailed,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskWaiting,
    WorkflowFinished,
    WorkflowStarted,
)

TASK = {"workflow_id": "wf", "task_id": 0, "key": "0", "step": "s"}


def started(n: int = 0) -> TaskStarted:
    return TaskStarted(**TASK, attempt=n)


def finished(status: str = "completed") -> WorkflowFinished:
    return WorkflowFinished(
        workflow_id="wf", status=status, duration=0.5, completed=1, skipped=0, failed=0
    )


async def drain(stream: EventStream) -> list[Event]:
    return [event async for event in stream]


def brief(events: list[Event]) -> list[tuple[str, Any]]:
    """Events without their timestamps: (type, attempt or count or status)."""
    out: list[tuple[str, Any]] = []
    for event in events:
        fields = dataclasses.asdict(event)
        detail = fields.get("attempt", fields.get("count", fields.get("status")))
        out.append((type(event).__name__, detail))
    return out


# --- the event types ------------------------------------------------------------------

ALL_EVENTS: list[Event] = [
    WorkflowStarted(workflow_id="wf", mode="sequential", resume=False, tasks=2),
    finished(),
    started(1),
    TaskSkipped(**TASK, reason="checkpoint"),
    TaskRetrying(**TASK, attempt=1, error="boom", delay=0.5),
    TaskCompleted(**TASK, attempts=1, duration=0.1),
    TaskFailed(**TASK, attempts=3, error="boom"),
    TaskWaiting(**TASK, wait="signal", signal="go", wake_at=None, deadline=None, parked=True),
    CheckpointWritten(**TASK, storage_key="wf/tasks/0.json", size=10, duration=0.01),
    EventsDropped(workflow_id="wf", count=3),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_events_are_frozen(event: Event) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.workflow_id = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.time = 0.0  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        event.extra = 1  # type: ignore[attr-defined]  # slotted: no new attributes
    assert isinstance(event.time, float)
    assert event.time > 0


def test_task_events_carry_the_task() -> None:
    event = TaskFailed(
        workflow_id="wf", task_id=2, key="load", step="m.load", attempts=3, error="x"
    )
    assert isinstance(event, TaskEvent)
    assert (event.task_id, event.key, event.step, event.attempts) == (2, "load", "m.load", 3)


def test_events_are_keyword_only_and_compare_by_value() -> None:
    with pytest.raises(TypeError):
        EventsDropped("wf", 0.0, 3)  # type: ignore[misc]
    assert EventsDropped(workflow_id="wf", count=3, time=1.0) == EventsDropped(
        workflow_id="wf", count=3, time=1.0
    )
    assert hash(EventsDropped(workflow_id="wf", count=3, time=1.0)) is not None


# --- the bus --------------------------------------------------------------------------


def test_bus_is_inactive_without_subscribers() -> None:
    bus = EventBus()
    assert bus.active is False
    bus.publish(started())  # nobody listens: nothing happens, nothing raises
    stream = bus.subscribe()
    assert bus.active is True
    stream.close()
    assert bus.active is False


@pytest.mark.parametrize("maxlen", [0, -1, 1.5, True, "10", None])
def test_subscribe_refuses_a_bad_maxlen(maxlen: Any) -> None:
    with pytest.raises(ConfigurationError, match="maxlen must be an int >= 1"):
        EventBus().subscribe(maxlen)


@pytest.mark.anyio
async def test_stream_delivers_in_order_and_ends_after_workflow_finished() -> None:
    bus = EventBus()
    stream = bus.subscribe()
    sent = [started(1), started(2), finished()]
    for event in sent:
        bus.publish(event)
    assert await drain(stream) == sent
    assert bus.active is False


@pytest.mark.anyio
async def test_nothing_after_workflow_finished_reaches_the_stream() -> None:
    bus = EventBus()
    stream = bus.subscribe()
    bus.publish(finished())
    bus.publish(WorkflowStarted(workflow_id="wf", mode="sequential", resume=True, tasks=1))
    bus.publish(started(1))
    assert brief(await drain(stream)) == [("WorkflowFinished", "completed")]
    assert bus.active is False


@pytest.mark.anyio
async def test_bounded_buffer_drops_oldest_and_says_so_first() -> None:
    bus = EventBus()
    stream = bus.subscribe(maxlen=3)
    for n in range(10):
        bus.publish(started(n))
    bus.publish(finished())
    events = await drain(stream)
    assert brief(events) == [
        ("EventsDropped", 8),
        ("TaskStarted", 8),
        ("TaskStarted", 9),
        ("WorkflowFinished", "completed"),
    ]
    assert events[0].workflow_id == "wf"


@pytest.mark.anyio
async def test_drops_are_reported_again_after_the_consumer_catches_up() -> None:
    bus = EventBus()
    stream = bus.subscribe(maxlen=2)
    for n in range(4):
        bus.publish(started(n))
    first = [await stream.__anext__() for _ in range(3)]
    assert brief(first) == [("EventsDropped", 2), ("TaskStarted", 2), ("TaskStarted", 3)]
    for n in range(4, 9):
        bus.publish(started(n))
    bus.publish(finished())
    assert brief(await drain(stream)) == [
        ("EventsDropped", 4),
        ("TaskStarted", 8),
        ("WorkflowFinished", "completed"),
    ]


@pytest.mark.anyio
async def test_a_slow_consumer_never_blocks_publish() -> None:
    bus = EventBus()
    stream = bus.subscribe(maxlen=1)
    for n in range(10_000):
        bus.publish(started(n))  # synchronous: returns at once, whatever the consumer does
    assert len(stream._queue) == 1
    stream.close()


@pytest.mark.anyio
async def test_close_unsubscribes_but_delivers_what_was_buffered() -> None:
    bus = EventBus()
    stream = bus.subscribe()
    bus.publish(started(1))
    stream.close()
    assert bus.active is False
    bus.publish(started(2))
    assert brief(await drain(stream)) == [("TaskStarted", 1)]


@pytest.mark.anyio
async def test_close_wakes_a_waiting_consumer() -> None:
    bus = EventBus()
    stream = bus.subscribe()
    received: list[Event] = []

    async def consume() -> None:
        received.extend(await drain(stream))

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        bus.publish(started(1))
        await anyio.wait_all_tasks_blocked()
        assert received == []  # still iterating: the stream has not ended
        stream.close()
    assert brief(received) == [("TaskStarted", 1)]


@pytest.mark.anyio
async def test_waiting_consumer_is_woken_by_publish() -> None:
    bus = EventBus()
    stream = bus.subscribe()
    received: list[Event] = []

    async def consume() -> None:
        async for event in stream:
            received.append(event)

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        bus.publish(started(1))
        await anyio.wait_all_tasks_blocked()
        assert brief(received) == [("TaskStarted", 1)]
        bus.publish(finished())
    assert brief(received) == [("TaskStarted", 1), ("WorkflowFinished", "completed")]


@pytest.mark.anyio
async def test_async_context_manager_and_aclose_unsubscribe() -> None:
    bus = EventBus()
    async with bus.subscribe() as stream:
        assert bus.active is True
        assert stream.__aiter__() is stream
    assert bus.active is False
    other = bus.subscribe()
    await other.aclose()
    assert bus.active is False


@pytest.mark.anyio
async def test_every_subscriber_gets_every_event() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe(maxlen=1)
    bus.publish(started(1))
    bus.publish(finished())
    assert brief(await drain(a)) == [("TaskStarted", 1), ("WorkflowFinished", "completed")]
    assert brief(await drain(b)) == [("EventsDropped", 1), ("WorkflowFinished", "completed")]


# --- through a flow -------------------------------------------------------------------


@pytest.mark.anyio
async def test_flow_events_of_one_run() -> None:
    @action
    async def ok() -> int:
        return 1

    flow = AsyncFlow(workflow_id="events-demo")
    flow.task.add(step=ok)
    stream = flow.events()
    await flow.start()
    kinds = [type(e).__name__ for e in await drain(stream)]
    assert kinds == [
        "WorkflowStarted",
        "TaskStarted",
        "CheckpointWritten",
        "TaskCompleted",
        "WorkflowFinished",
    ]


@pytest.mark.anyio
async def test_flow_events_refuse_a_bad_maxlen() -> None:
    with pytest.raises(ConfigurationError):
        AsyncFlow().events(maxlen=0)
