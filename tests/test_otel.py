"""OpenTelemetry from the event stream, checked with the SDK's in-memory exporters."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from asyncflow import AsyncFlow, Config, action
from asyncflow.otel import instrument, trace_events
from asyncflow.providers import StorageDefault
from asyncflow.schedule import ManualClock, Scheduler

pytestmark = pytest.mark.anyio


class Telemetry:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    @property
    def providers(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def by_name(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def total(self, name: str) -> int:
        return sum(point.value for point in self.metrics().get(name, []))


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry()
    yield made
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()


def etl(storage: StorageDefault, fail_load: list[bool]) -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="etl")
    attempts = {"transform": 0}

    @action
    async def extract() -> int:
        return 1

    @action(retry=2)
    async def transform(previous_context: Any) -> int:
        attempts["transform"] += 1
        if attempts["transform"] == 1:
            raise ConnectionError("flaky")
        return int(previous_context.storage) + 1

    @action
    async def load(previous_context: Any) -> int:
        if fail_load[0]:
            raise RuntimeError("the warehouse is down")
        return int(previous_context.storage)

    flow.task.add(step=extract)
    flow.task.add(step=transform)
    flow.task.add(step=load, key="load")
    return flow


async def test_a_run_is_one_workflow_span_with_a_child_span_per_step(telemetry: Telemetry) -> None:
    flow = etl(StorageDefault(), [False])
    async with instrument(flow, **telemetry.providers):
        await flow.start()
    [workflow] = telemetry.by_name("asyncflow.workflow")
    steps = [s for s in telemetry.spans() if s.name.startswith("asyncflow.step ")]
    assert [s.name for s in steps] == [
        "asyncflow.step etl.<locals>.extract",
        "asyncflow.step etl.<locals>.transform",
        "asyncflow.step etl.<locals>.load",
    ]
    assert workflow.attributes is not None
    assert dict(workflow.attributes) == {
        "asyncflow.workflow.id": "etl",
        "asyncflow.storage.backend": "StorageDefault",
        "asyncflow.mode": "sequential",
        "asyncflow.resume": False,
        "asyncflow.tasks": 3,
        "asyncflow.status": "completed",
        "asyncflow.steps.completed": 3,
        "asyncflow.steps.skipped": 0,
        "asyncflow.steps.failed": 0,
    }
    assert workflow.status.status_code is StatusCode.OK
    for span in steps:
        assert span.parent is not None
        assert span.parent.span_id == workflow.context.span_id
        assert span.context.trace_id == workflow.context.trace_id
        assert span.status.status_code is StatusCode.OK
        assert span.start_time is not None
        assert span.end_time is not None
        assert workflow.start_time is not None
        assert workflow.end_time is not None
        assert workflow.start_time <= span.start_time <= span.end_time <= workflow.end_time
    transform = steps[1]
    assert transform.attributes is not None
    attributes = dict(transform.attributes)
    assert attributes.pop("asyncflow.step") == "etl.<locals>.transform"
    assert attributes == {
        "asyncflow.workflow.id": "etl",
        "asyncflow.task.id": 1,
        "asyncflow.task.key": "transform",
        "asyncflow.storage.backend": "StorageDefault",
        "asyncflow.step.attempt": 2,
        "asyncflow.skipped_from_checkpoint": False,
    }
    assert steps[2].attributes is not None
    assert steps[2].attributes["asyncflow.task.key"] == "load"
    [retry] = [e for e in transform.events if e.name == "retry"]
    assert retry.attributes is not None
    assert retry.attributes["asyncflow.step.attempt"] == 1
    assert "flaky" in str(retry.attributes["error"])
    assert [e.name for e in transform.events] == ["retry", "checkpoint"]

    assert telemetry.total("asyncflow.steps.completed") == 3
    assert telemetry.total("asyncflow.steps.retries") == 1
    assert telemetry.total("asyncflow.steps.failed") == 0
    writes = telemetry.metrics()["asyncflow.checkpoint.write.duration"]  # one point per step
    assert sum(point.count for point in writes) == 3
    assert all(point.sum >= 0 for point in writes)
    assert {point.attributes["asyncflow.storage.backend"] for point in writes} == {"StorageDefault"}
    [runs] = telemetry.metrics()["asyncflow.workflow.runs"]
    assert dict(runs.attributes)["asyncflow.status"] == "completed"


async def test_a_failed_run_then_its_resume(telemetry: Telemetry) -> None:
    storage = StorageDefault()
    fail = [True]
    flow = etl(storage, fail)
    async with instrument(flow, **telemetry.providers):
        await flow.start(resume=True)
    [failed_run] = telemetry.by_name("asyncflow.workflow")
    assert failed_run.status.status_code is StatusCode.ERROR
    [load] = telemetry.by_name("asyncflow.step etl.<locals>.load")
    assert load.status.status_code is StatusCode.ERROR
    assert "warehouse" in str(load.status.description)
    assert telemetry.total("asyncflow.steps.failed") == 1

    telemetry.exporter.clear()
    fail[0] = False
    async with instrument(flow, **telemetry.providers):
        await flow.start(resume=True)
    spans = {s.name.rsplit(".", 1)[-1]: s for s in telemetry.spans()}
    for name, skipped in (("extract", True), ("transform", True), ("load", False)):
        attributes = spans[name].attributes
        assert attributes is not None
        assert attributes["asyncflow.skipped_from_checkpoint"] is skipped, name
    assert spans["workflow"].status.status_code is StatusCode.OK
    assert telemetry.total("asyncflow.steps.skipped") == 2
    assert telemetry.total("asyncflow.steps.completed") == 2 + 1  # first run's two, then load


async def test_the_workflow_span_is_a_child_of_the_current_span(telemetry: Telemetry) -> None:
    flow = etl(StorageDefault(), [False])
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        async with instrument(flow, **telemetry.providers):
            await flow.start()
    [workflow] = telemetry.by_name("asyncflow.workflow")
    assert workflow.parent is not None
    assert workflow.parent.span_id == request.get_span_context().span_id


async def test_background_mode_inside_the_block(telemetry: Telemetry) -> None:
    flow = etl(StorageDefault(), [False])
    async with instrument(flow, **telemetry.providers):
        await flow.start(mode="background")
        await flow.wait()
    assert len(telemetry.by_name("asyncflow.workflow")) == 1
    assert telemetry.total("asyncflow.steps.completed") == 3


async def test_a_cancelled_run_ends_its_open_spans_as_errors(telemetry: Telemetry) -> None:
    flow = AsyncFlow(workflow_id="slow")
    started = anyio.Event()

    @action
    async def slow() -> None:
        started.set()
        await anyio.sleep_forever()

    flow.task.add(step=slow)
    async with instrument(flow, **telemetry.providers), anyio.create_task_group() as group:
        group.start_soon(flow.start)
        await started.wait()
        flow.cancel()
    [workflow] = telemetry.by_name("asyncflow.workflow")
    assert workflow.attributes is not None
    assert workflow.attributes["asyncflow.status"] == "cancelled"
    assert workflow.status.status_code is StatusCode.ERROR
    [step] = [s for s in telemetry.spans() if s.name.startswith("asyncflow.step")]
    assert step.status.status_code is StatusCode.ERROR
    assert "did not finish" in str(step.status.description)


async def test_a_block_without_a_run_and_an_error_in_the_block(telemetry: Telemetry) -> None:
    flow = etl(StorageDefault(), [False])
    async with instrument(flow, **telemetry.providers):
        pass
    with pytest.raises(KeyError):  # raised as is, not in an ExceptionGroup
        async with instrument(flow, **telemetry.providers):
            raise KeyError("boom")
    assert telemetry.spans() == []


async def test_trace_events_on_a_stream(telemetry: Telemetry) -> None:
    flow = etl(StorageDefault(), [False])
    stream = flow.events()
    async with anyio.create_task_group() as group:
        group.start_soon(functools.partial(trace_events, stream, **telemetry.providers))
        await flow.start()
    assert len(telemetry.spans()) == 4
    [workflow] = telemetry.by_name("asyncflow.workflow")
    assert workflow.attributes is not None
    assert "asyncflow.storage.backend" not in workflow.attributes  # not given


async def test_each_scheduled_run_is_traced_with_around_run(telemetry: Telemetry) -> None:
    flow = etl(StorageDefault(), [False])
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    clock = ManualClock(t0)
    scheduler = Scheduler(
        flow,
        "* * * * *",
        clock=clock,
        around_run=functools.partial(instrument, **telemetry.providers),
    )
    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        while clock.sleepers == 0:
            await anyio.lowlevel.checkpoint()
        for minute in (1, 2):
            await clock.set(t0 + dt.timedelta(minutes=minute))
            for _ in range(10_000):
                if len(scheduler.runs) == minute and not scheduler.active:
                    break
                await anyio.lowlevel.checkpoint()
        group.cancel_scope.cancel()
    runs = telemetry.by_name("asyncflow.workflow")
    assert len(runs) == 2
    assert len({span.context.trace_id for span in runs}) == 2  # one trace per run


async def test_map_children_get_their_own_spans_under_the_workflow(telemetry: Telemetry) -> None:
    from asyncflow import Context

    @action
    async def items() -> list[int]:
        return [1, 2, 3]

    @action
    async def double(initial_context: Context) -> int:
        await anyio.sleep(0.001 * initial_context.storage)
        return 2 * initial_context.storage

    flow = AsyncFlow(workflow_id="mapped")
    flow.task.add(step=items)
    flow.task.map(double, over="items", key="double")
    async with instrument(flow, **telemetry.providers):
        await flow.start(mode="graph")
    [workflow] = telemetry.by_name("asyncflow.workflow")
    steps = [s for s in telemetry.spans() if s.name.startswith("asyncflow.step ")]
    keys = sorted(str(dict(s.attributes or {})["asyncflow.task.key"]) for s in steps)
    assert keys == ["double", "double.0", "double.1", "double.2", "items"]
    for span in steps:
        assert span.parent is not None
        assert span.parent.span_id == workflow.context.span_id
        assert span.end_time is not None


async def test_a_task_skipped_upstream_failed_is_not_from_a_checkpoint(
    telemetry: Telemetry,
) -> None:
    from asyncflow import Context

    @action
    async def load() -> None:
        raise RuntimeError("down")

    @action
    async def enrich(previous_context: Context) -> Any:
        return previous_context.storage

    flow = AsyncFlow(workflow_id="upstream")
    flow.task.add(step=load, key="load")
    flow.task.add(step=enrich, key="enrich", depends_on="load")
    async with instrument(flow, **telemetry.providers):
        await flow.start(keep_going=True)
    [span] = [s for s in telemetry.spans() if s.name.endswith(".enrich")]
    attributes = dict(span.attributes or {})
    assert attributes["asyncflow.skipped_from_checkpoint"] is False
    assert attributes["asyncflow.skip.reason"] == "upstream failed"
