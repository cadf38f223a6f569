"""A flow with a durable wait, run in child interpreters by ``test_waits_cross_process``.

argv: STORAGE_URL LOG_FILE NOW WORKFLOW_ID WAIT ON_WAIT
``NOW`` (epoch seconds) is the time on this process's manual clock; ``WAIT``
is ``sleep:SECONDS`` or ``signal:NAME``. Each real execution of a step
appends ``<step> <workflow id> <input>`` to LOG_FILE. Prints ``waiting`` when
the wait is not due (flushed), then ``status <status> due_at <due_at>``.

``make(workflow_id)`` builds the same flow for ``asyncflow worker``, from the
environment (WAITY_URL, WAITY_LOG, WAITY_WAIT; ids with ``nap`` sleep 60s).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any

import anyio

from asyncflow import AsyncFlow, Config, Context, action, events, wait
from asyncflow.providers import storage_from_url
from asyncflow.schedule import ManualClock


def _log(log_file: str, line: str) -> None:
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def build(url: str, log_file: str, workflow_id: str, what: str, clock: Any = None) -> AsyncFlow:
    kind, _, arg = what.partition(":")
    step = wait.sleep(float(arg)) if kind == "sleep" else wait.signal(arg)

    async def before() -> str:
        _log(log_file, f"before {workflow_id} -")
        return "b"

    async def after(previous_context: Context) -> Any:
        value = previous_context.storage
        shown = value.isoformat() if isinstance(value, dt.datetime) else json.dumps(value)
        _log(log_file, f"after {workflow_id} {shown}")
        await anyio.sleep(0.05)
        return "done"

    config = Config(storage=storage_from_url(url), clock=clock, signal_poll=0.1)
    flow = AsyncFlow(config=config, workflow_id=workflow_id)
    flow.task.add(step=action(before), key="before")
    flow.task.add(step=step, key="wait")
    flow.task.add(step=action(after), key="after")
    return flow


def make(workflow_id: str) -> AsyncFlow:
    env = os.environ
    what = "sleep:60" if "nap" in workflow_id else env["WAITY_WAIT"]
    return build(env["WAITY_URL"], env["WAITY_LOG"], workflow_id, what)


async def main(
    url: str, log_file: str, now: str, workflow_id: str, what: str, on_wait: str
) -> None:
    clock = ManualClock(dt.datetime.fromtimestamp(float(now), dt.timezone.utc))
    flow = build(url, log_file, workflow_id, what, clock)
    stream = flow.events()

    async def announce() -> None:
        async for event in stream:
            if isinstance(event, events.TaskWaiting):
                print("waiting", flush=True)

    async with anyio.create_task_group() as group:
        group.start_soon(announce)
        await flow.start(resume=True, on_wait=on_wait)  # type: ignore[arg-type]
        group.cancel_scope.cancel()
    blob = await flow.config.storage.read(f"{workflow_id}/run.json")
    assert blob is not None
    print("status", flow.status, "due_at", json.loads(blob.data).get("due_at"), flush=True)
    await flow.config.storage.aclose()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:7])
