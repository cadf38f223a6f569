"""OpenTelemetry traces and metrics of runs, built only on ``flow.events()``.

::

    from asyncflow.otel import instrument

    async with instrument(flow):                 # global providers by default
        await flow.start()

Nothing is wired into the engine: ``trace_events`` consumes a run's event
stream and turns it into

* one span per run, ``asyncflow.workflow`` (attributes
  ``asyncflow.workflow.id``, ``asyncflow.mode``, ``asyncflow.resume``,
  ``asyncflow.tasks``, ``asyncflow.storage.backend``; at the end
  ``asyncflow.status`` and the completed/skipped/failed counts; status ERROR
  for a failed or cancelled run), child of the context current when
  ``instrument`` was entered;
* one child span per step, ``asyncflow.step {step}``, from its first attempt
  to its outcome (attributes ``asyncflow.workflow.id``, ``asyncflow.task.id``,
  ``asyncflow.task.key``, ``asyncflow.step``, ``asyncflow.step.attempt``
  (attempts made), ``asyncflow.skipped_from_checkpoint``,
  ``asyncflow.storage.backend``); each retry is a span event ``retry``
  (attempt, error, delay) and each checkpoint write an event ``checkpoint``
  (storage key, size, duration). A step restored from its checkpoint is a
  zero-length span with ``asyncflow.skipped_from_checkpoint=True``;
* metrics: counters ``asyncflow.steps.completed``, ``asyncflow.steps.failed``,
  ``asyncflow.steps.skipped``, ``asyncflow.steps.retries``,
  ``asyncflow.workflow.runs`` (attribute ``asyncflow.status``) and the
  histogram ``asyncflow.checkpoint.write.duration`` (seconds, from
  ``CheckpointWritten.duration``). Metric attributes are the step name and
  the storage backend class, never the workflow id (scheduled runs in
  ``parallel`` mode each have their own id: unbounded cardinality).

Span times are the events' own timestamps, so a consumer that lags does not
stretch them. Spans opened by step code are not children of the step spans
(the stream is observed, not wrapped around the steps).

Needs the ``otel`` extra (opentelemetry-api); install an SDK to export.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is installed in tests
    raise ImportError(
        f"asyncflow.otel needs its extra ({exc.name} is missing):"
        " pip install 'asyncflow-durable[otel]'"
    ) from exc

from asyncflow import events
from asyncflow._version import __version__

if TYPE_CHECKING:
    from asyncflow import AsyncFlow

__all__ = ["instrument", "trace_events"]

Attributes = dict[str, str | bool | int | float]

_SCOPE = "asyncflow"


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class _Instruments:
    def __init__(self, meter_provider: metrics.MeterProvider | None) -> None:
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self.completed = meter.create_counter(
            "asyncflow.steps.completed", unit="{step}", description="Steps run to completion"
        )
        self.failed = meter.create_counter(
            "asyncflow.steps.failed", unit="{step}", description="Steps failed after all attempts"
        )
        self.skipped = meter.create_counter(
            "asyncflow.steps.skipped",
            unit="{step}",
            description="Steps restored from their checkpoint instead of run",
        )
        self.retries = meter.create_counter(
            "asyncflow.steps.retries", unit="{attempt}", description="Step attempts retried"
        )
        self.runs = meter.create_counter(
            "asyncflow.workflow.runs", unit="{run}", description="Finished runs, by status"
        )
        self.checkpoint_write = meter.create_histogram(
            "asyncflow.checkpoint.write.duration",
            unit="s",
            description="Time to write one checkpoint record to storage",
        )


class _Tracer:
    """The spans and measurements of one run, fed one event at a time."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        storage_backend: str | None,
        parent: otel_context.Context | None,
    ) -> None:
        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        self.instruments = _Instruments(meter_provider)
        self.backend = storage_backend
        self.parent = parent
        self.workflow: Span | None = None
        self.steps: dict[str, Span] = {}  # by key: map children share task ids
        self.dropped = 0

    def _common(self) -> dict[str, str]:
        return {"asyncflow.storage.backend": self.backend} if self.backend else {}

    def _step_attributes(self, event: events.TaskEvent) -> dict[str, str | int | bool]:
        return {
            "asyncflow.workflow.id": event.workflow_id,
            "asyncflow.task.id": event.task_id,
            "asyncflow.task.key": event.key,
            "asyncflow.step": event.step,
            **self._common(),
        }

    def _metric_attributes(self, event: events.TaskEvent) -> dict[str, str]:
        return {"asyncflow.step": event.step, **self._common()}

    def _workflow_span(self, event: events.Event) -> Span:
        if self.workflow is None:  # no WorkflowStarted seen (dropped): open one now
            self.workflow = self.tracer.start_span(
                "asyncflow.workflow",
                context=self.parent,
                kind=SpanKind.INTERNAL,
                start_time=_ns(event.time),
                attributes={"asyncflow.workflow.id": event.workflow_id, **self._common()},
            )
        return self.workflow

    def _step_span(self, event: events.TaskEvent) -> Span:
        span = self.steps.get(event.key)
        if span is None:
            parent = trace.set_span_in_context(self._workflow_span(event), self.parent)
            span = self.tracer.start_span(
                f"asyncflow.step {event.step}",
                context=parent,
                start_time=_ns(event.time),
                attributes={**self._step_attributes(event), "asyncflow.step.attempt": 1},
            )
            self.steps[event.key] = span
        return span

    def handle(self, event: events.Event) -> None:
        if isinstance(event, events.WorkflowStarted):
            started: Attributes = {
                "asyncflow.mode": event.mode,
                "asyncflow.resume": event.resume,
                "asyncflow.tasks": event.tasks,
            }
            self._workflow_span(event).set_attributes(started)
        elif isinstance(event, events.TaskStarted):
            span = self._step_span(event)
            span.set_attribute("asyncflow.step.attempt", event.attempt)
            if event.attempt == 1:
                span.set_attribute("asyncflow.skipped_from_checkpoint", False)
        elif isinstance(event, events.TaskRetrying):
            retry: Attributes = {
                "asyncflow.step.attempt": event.attempt,
                "error": event.error,
                "asyncflow.retry.delay": event.delay,
            }
            self._step_span(event).add_event("retry", retry, timestamp=_ns(event.time))
            self.instruments.retries.add(1, self._metric_attributes(event))
        elif isinstance(event, events.CheckpointWritten):
            open_span = self.steps.get(event.key)
            if open_span is not None:
                written: Attributes = {
                    "asyncflow.storage.key": event.storage_key,
                    "size": event.size,
                    "duration": event.duration,
                }
                open_span.add_event("checkpoint", written, timestamp=_ns(event.time))
            self.instruments.checkpoint_write.record(event.duration, self._metric_attributes(event))
        elif isinstance(event, events.TaskCompleted):
            span = self._step_span(event)
            span.set_attributes(
                {
                    "asyncflow.step.attempt": event.attempts,
                    "asyncflow.skipped_from_checkpoint": False,
                }
            )
            span.set_status(Status(StatusCode.OK))
            self._end_step(event)
            self.instruments.completed.add(1, self._metric_attributes(event))
        elif isinstance(event, events.TaskFailed):
            span = self._step_span(event)
            span.set_attribute("asyncflow.step.attempt", event.attempts)
            span.set_attribute("asyncflow.skipped_from_checkpoint", False)
            span.set_status(Status(StatusCode.ERROR, event.error))
            self._end_step(event)
            self.instruments.failed.add(1, self._metric_attributes(event))
        elif isinstance(event, events.TaskSkipped):
            span = self._step_span(event)
            span.set_attributes(
                {
                    "asyncflow.skipped_from_checkpoint": event.reason == "checkpoint",
                    "asyncflow.skip.reason": event.reason,
                }
            )
            span.set_status(Status(StatusCode.OK))
            self._end_step(event)
            self.instruments.skipped.add(1, self._metric_attributes(event))
        elif isinstance(event, events.EventsDropped):
            self.dropped += event.count
            self._workflow_span(event).add_event(
                "events dropped", {"count": event.count}, timestamp=_ns(event.time)
            )
        elif isinstance(event, events.WorkflowFinished):
            span = self._workflow_span(event)
            span.set_attributes(
                {
                    "asyncflow.status": event.status,
                    "asyncflow.steps.completed": event.completed,
                    "asyncflow.steps.skipped": event.skipped,
                    "asyncflow.steps.failed": event.failed,
                }
            )
            if event.status == "completed":
                span.set_status(Status(StatusCode.OK))
            else:
                span.set_status(Status(StatusCode.ERROR, f"run {event.status}"))
            self.instruments.runs.add(1, {"asyncflow.status": event.status, **self._common()})
            self.close(_ns(event.time), reason=event.status)

    def _end_step(self, event: events.TaskEvent) -> None:
        span = self.steps.pop(event.key, None)
        if span is not None:
            span.end(end_time=_ns(event.time))

    def close(self, end_time: int | None = None, reason: str = "ended") -> None:
        """End every open span (steps cut short by a cancellation or a lost event)."""
        for span in self.steps.values():
            span.set_status(Status(StatusCode.ERROR, f"step did not finish: run {reason}"))
            span.end(end_time=end_time)
        self.steps.clear()
        if self.workflow is not None:
            if self.dropped:
                self.workflow.set_attribute("asyncflow.events.dropped", self.dropped)
            self.workflow.end(end_time=end_time)
            self.workflow = None


async def trace_events(
    stream: AsyncIterable[events.Event],
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    storage_backend: str | None = None,
    context: otel_context.Context | None = None,
) -> None:
    """Turn one run's events (e.g. ``flow.events()``) into spans and metrics.

    Returns when the stream ends (after ``WorkflowFinished``). Spans still
    open then (the stream was closed early, or this was cancelled) are ended.
    ``context`` is the parent of the workflow span (default: the current one).
    """
    tracer = _Tracer(
        tracer_provider,
        meter_provider,
        storage_backend,
        context if context is not None else otel_context.get_current(),
    )
    try:
        async for event in stream:
            tracer.handle(event)
    finally:
        tracer.close(reason="not finished")


@asynccontextmanager
async def instrument(
    flow: AsyncFlow,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> AsyncIterator[None]:
    """Trace the run of ``flow`` that happens inside the block.

    Subscribes to ``flow.events()`` on entry and consumes them in a task
    until the run's ``WorkflowFinished``; on exit, waits for the events
    already published. One block covers one run: in ``background`` mode,
    ``await flow.wait()`` inside it. Also fits ``flow.schedule(around_run=instrument)``.
    """
    stream = flow.events()
    backend = type(flow.config.storage).__name__
    parent = otel_context.get_current()
    error: Exception | None = None
    async with anyio.create_task_group() as group:

        async def consume() -> None:
            await trace_events(
                stream,
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                storage_backend=backend,
                context=parent,
            )

        group.start_soon(consume)
        try:
            yield
        except Exception as exc:  # re-raised as is, not in an ExceptionGroup
            error = exc
        finally:
            stream.close()  # buffered events are still delivered
    if error is not None:
        raise error
