"""A FastAPI app that runs a flow in the background and resumes it after a restart.

    pip install 'asyncflow' fastapi uvicorn
    ASYNCFLOW_PATH=/tmp/checkpoints uvicorn fastapi_app:app --app-dir examples
    curl http://127.0.0.1:8000/status

The app's ``lifespan`` starts the flow with ``mode="background"`` and
``resume=True`` on the server's own event loop and returns at once, so the
server answers requests while the steps run. Kill the server in the middle
(Ctrl-C, a crash, a deploy) and start it again: the steps that completed are
restored from their checkpoints and the flow carries on from the first one
that did not. A server that was killed outright leaves its lease behind; the
next one takes it over at once, because the holder ran on this host and its
process is gone.

Environment:

- ``ASYNCFLOW_PATH``: the checkpoint folder (``StorageFile``), default ``.asyncflow``;
- ``ASYNCFLOW_STEP_SECONDS``: how long each simulated step takes, default 1;
- ``ASYNCFLOW_CALL_LOG``: if set, each step appends ``<pid> <step>`` to this
  file when it starts (the tests read it to see which steps really ran).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI

from asyncflow import AsyncFlow, Config, Context, action, events
from asyncflow.providers import StorageFile

WORKFLOW_ID = "nightly-report"


async def work(name: str) -> None:
    """Log that ``name`` started, then take ``ASYNCFLOW_STEP_SECONDS`` (a stand-in for I/O)."""
    log = os.environ.get("ASYNCFLOW_CALL_LOG")
    if log:
        with open(log, "a") as handle:  # noqa: ASYNC230 - one tiny line
            handle.write(f"{os.getpid()} {name}\n")
    await anyio.sleep(float(os.environ.get("ASYNCFLOW_STEP_SECONDS", "1")))


@action
async def extract() -> list[int]:
    await work("extract")
    return [3, 1, 2]


@action
async def clean(previous_context: Context) -> list[int]:
    await work("clean")
    return sorted(previous_context.storage)


@action
async def enrich(previous_context: Context) -> list[dict[str, int]]:
    await work("enrich")
    return [{"id": n, "square": n * n} for n in previous_context.storage]


@action
async def aggregate(previous_context: Context) -> dict[str, int]:
    await work("aggregate")
    return {
        "rows": len(previous_context.storage),
        "total": sum(r["square"] for r in previous_context.storage),
    }


@action
async def publish(previous_context: Context) -> dict[str, Any]:
    await work("publish")
    return {"published": previous_context.storage}


def build_flow() -> AsyncFlow:
    storage = StorageFile(os.environ.get("ASYNCFLOW_PATH", ".asyncflow"))
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=WORKFLOW_ID)
    for step in (extract, clean, enrich, aggregate, publish):
        flow.task.add(step=step)
    return flow


class Progress:
    """What the event stream said so far: each step's latest state, and the events seen."""

    def __init__(self) -> None:
        self.steps: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []
        self.finished: str | None = None
        self.error: str | None = None

    async def follow(self, stream: AsyncIterator[events.Event]) -> None:
        async for event in stream:
            self.events.append({"type": type(event).__name__, **dataclasses.asdict(event)})
            if isinstance(event, events.TaskStarted):
                self.steps[event.step] = "running"
            elif isinstance(event, events.TaskSkipped):
                self.steps[event.step] = "restored"
            elif isinstance(event, events.TaskCompleted):
                self.steps[event.step] = "completed"
            elif isinstance(event, events.TaskFailed):
                self.steps[event.step] = "failed"
            elif isinstance(event, events.WorkflowFinished):
                self.finished = event.status


async def supervise(flow: AsyncFlow, progress: Progress) -> None:
    """Join the background run so that an error (e.g. ``WorkflowLocked``) is reported."""
    try:
        await flow.wait()
    except Exception as exc:
        progress.error = repr(exc)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    flow = build_flow()
    progress = Progress()
    app.state.flow, app.state.progress = flow, progress
    stream = flow.events()  # subscribe before starting: no event is missed
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress.follow, stream)
        await flow.start(mode="background", resume=True)  # returns at once
        tg.start_soon(supervise, flow, progress)
        yield
        # Shutting down: stop the run. Completed steps keep their checkpoints;
        # the interrupted one has none and runs again on the next start.
        flow.cancel()
        with anyio.move_on_after(5):
            await flow.wait()
        stream.close()


app = FastAPI(title="asyncflow in FastAPI", lifespan=lifespan)


@app.get("/status")
async def status() -> dict[str, Any]:
    """The run as the flow sees it (``result_task()``) and as the event stream told it."""
    flow: AsyncFlow = app.state.flow
    progress: Progress = app.state.progress
    return {
        "workflow_id": flow.workflow_id,
        "pid": os.getpid(),
        "status": flow.status,
        "error": progress.error,
        "tasks": [
            {
                "step": task.name,
                "status": task.status.value.lower(),
                "restored": task.restored,
            }
            for task in flow.result_task()
        ],
        "steps": progress.steps,
        "finished": progress.finished,
    }


@app.get("/events")
async def event_log() -> list[dict[str, Any]]:
    """Every event of this server's run so far, oldest first."""
    progress: Progress = app.state.progress
    return progress.events


@app.get("/result")
async def result() -> dict[str, Any]:
    """Each step's output (``result_storage()``), once the run completed."""
    flow: AsyncFlow = app.state.flow
    return {"status": flow.status, "outputs": flow.result_storage()}
