"""Flows at the edges of waits and maps, run in child interpreters by ``test_cli_wait_edges``.

argv: STORAGE_URL WORKFLOW_ID WHAT [MODE]
``WHAT`` is one of

* ``signal:NAME[:TIMEOUT]``: ``wait.signal`` then a step echoing its input;
* ``sleep:SECONDS``: ``wait.sleep`` on the wall clock, then the same step;
* ``map:N:PAUSE``: a map of N children, each sleeping PAUSE seconds, two at a time;
* ``tamper``: rewrite the parked run's wake time and ``due_at`` to 1e300.

``MODE`` is ``fresh`` (``start()``), ``resume``, ``park`` (``resume=True,
on_wait="park"``, the default) or ``block``. Prints ``waiting`` once a wait
is armed and not due (flushed), then ``status <status> output <json>`` and,
for a failed run, ``error <type>``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import anyio

from asyncflow import AsyncFlow, Config, Context, action, events, wait
from asyncflow.providers import storage_from_url


@action
async def echo(previous_context: Context) -> Any:
    value = previous_context.storage
    return value.isoformat() if isinstance(value, dt.datetime) else value


@action
async def items(initial_context: Context) -> list[int]:
    return list(range(int(initial_context.storage)))


def build(url: str, workflow_id: str, what: str) -> AsyncFlow:
    flow = AsyncFlow(
        config=Config(storage=storage_from_url(url), signal_poll=0.1), workflow_id=workflow_id
    )
    kind, _, rest = what.partition(":")
    if kind == "map":
        count, _, pause = rest.partition(":")

        @action
        async def convert(initial_context: Context) -> int:
            await anyio.sleep(float(pause))
            return int(initial_context.storage)

        flow.task.add(step=items, key="items", initial_context=int(count))
        flow.task.map(convert, over="items", key="convert", max_concurrency=2)
        return flow
    if kind == "sleep":
        flow.task.add(step=wait.sleep(float(rest)), key="wait")
    else:
        name, _, timeout = rest.partition(":")
        flow.task.add(
            step=wait.signal(name, timeout=float(timeout) if timeout else None), key="wait"
        )
    flow.task.add(step=echo, key="echo")
    return flow


async def tamper(url: str, workflow_id: str) -> None:
    storage = storage_from_url(url)
    where = f"{workflow_id}/run.json"
    blob = await storage.read(where)
    assert blob is not None
    raw = json.loads(blob.data)
    raw["due_at"] = 1e300
    for spec in raw["waiting"].values():
        spec["wake_at"] = 1e300
    await storage.write(where, json.dumps(raw).encode())
    await storage.aclose()


async def main(url: str, workflow_id: str, what: str, mode: str = "park") -> None:
    if what == "tamper":
        await tamper(url, workflow_id)
        return
    flow = build(url, workflow_id, what)
    stream = flow.events()

    async def announce() -> None:
        async for event in stream:
            if isinstance(event, events.TaskWaiting):
                print("waiting", flush=True)

    options: dict[str, Any] = {
        "fresh": {},
        "resume": {"resume": True},
        "park": {"resume": True, "on_wait": "park"},
        "block": {"resume": True, "on_wait": "block"},
    }[mode]
    async with anyio.create_task_group() as group:
        group.start_soon(announce)
        await flow.start(**options)
        group.cancel_scope.cancel()
    last = flow.result_task()[-1]
    print("status", flow.status, "output", json.dumps(last.current_context.storage), flush=True)
    failed = [t for t in flow.result_task() if t.error is not None]
    if failed:
        print("error", type(failed[0].error).__name__, flush=True)
    await flow.config.storage.aclose()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:5])
