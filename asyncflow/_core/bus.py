"""Fan-out of run events to subscribers, without ever stalling the run."""

from __future__ import annotations

import collections
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from asyncflow._kernel.errors import ConfigurationError
from asyncflow.events import Event, EventsDropped, TaskEvent, WorkflowFinished

if TYPE_CHECKING:
    from asyncflow._core.task import Task

__all__ = ["EventBus", "EventStream"]


class EventStream:
    """One subscriber's view: an async iterator that ends after ``WorkflowFinished``.

    The buffer is bounded: when the consumer falls more than ``maxlen`` events
    behind, the oldest are dropped and an ``EventsDropped`` tells it how many,
    so the run never waits for a slow consumer and the consumer always knows.
    """

    def __init__(self, bus: EventBus, maxlen: int) -> None:
        self._bus = bus
        self._queue: collections.deque[Event] = collections.deque()
        self._maxlen = maxlen
        self._dropped = 0
        self._wakeup: anyio.Event | None = None
        self._closed = False

    def _push(self, event: Event) -> None:
        if len(self._queue) >= self._maxlen:
            self._queue.popleft()
            self._dropped += 1
        self._queue.append(event)
        if isinstance(event, WorkflowFinished):
            # The stream ends here: a next run's events must not follow it.
            self._bus.subscribers.discard(self)
        if self._wakeup is not None:
            self._wakeup.set()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._dropped:
                count, self._dropped = self._dropped, 0
                first = self._queue[0] if self._queue else None
                return EventsDropped(workflow_id=first.workflow_id if first else "", count=count)
            if self._queue:
                event = self._queue.popleft()
                if isinstance(event, WorkflowFinished):
                    self.close()
                return event
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def close(self) -> None:
        """Unsubscribe; events already buffered are still delivered."""
        self._closed = True
        self._bus.subscribers.discard(self)
        if self._wakeup is not None:
            self._wakeup.set()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self.subscribers: set[EventStream] = set()

    @property
    def active(self) -> bool:
        """Cheap check so events are only built when someone listens."""
        return bool(self.subscribers)

    def subscribe(self, maxlen: int = 10_000) -> EventStream:
        if type(maxlen) is not int or maxlen < 1:
            raise ConfigurationError(f"events maxlen must be an int >= 1, got {maxlen!r}")
        stream = EventStream(self, maxlen)
        self.subscribers.add(stream)
        return stream

    def task_event(
        self, kind: type[TaskEvent], workflow_id: str, task: Task, **fields: Any
    ) -> None:
        """Publish a task event if anyone listens; the task supplies its identifying fields."""
        if self.subscribers:
            self.publish(
                kind(
                    workflow_id=workflow_id,
                    task_id=task.task_id,
                    key=task.key,
                    step=task.name,
                    **fields,
                )
            )

    def publish(self, event: Event) -> None:
        for stream in tuple(self.subscribers):
            stream._push(event)
