"""What the viewer shows of waits, skipped tasks and live maps (issues 24 and 25), per backend."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import anyio
import pytest

import asyncflow
from asyncflow import AsyncFlow, Config, Context, action, wait
from asyncflow._core import runs
from asyncflow.providers import Storage
from asyncflow.schedule import ManualClock
from asyncflow.ui import create_app
from tests.ui.test_app import client, csrf_of

pytestmark = pytest.mark.anyio

START = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def approval(storage: Storage, wid: str = "refund") -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage, clock=ManualClock(START)), workflow_id=wid)
    flow.task.add(step=wait.signal("approve", timeout=3600), key="approve")
    return flow


async def test_a_received_signal_replaces_the_approve_button(storage: Storage) -> None:
    await approval(storage).start(on_wait="park")
    async with client(create_app(storage, actions=True)) as http:
        before = await http.get("/workflows/refund")
        assert "Approve: send approve" in before.text
        csrf = await csrf_of(http, "/workflows/refund")
        sent = await http.post(
            "/workflows/refund/signal", data={"name": "approve", "payload": "1", "csrf": csrf}
        )
        assert sent.status_code == 303
        after = await http.get("/workflows/refund")
        assert after.status_code == 200
        assert "signal <b>approve</b> received at " in after.text
        assert "the next resume consumes it" in after.text
        assert "Approve: send approve" not in after.text


async def test_a_signal_to_a_completed_run_is_a_clear_refusal(storage: Storage) -> None:
    await asyncflow.signal(storage, "refund", "approve", 1, before_start=True)
    await approval(storage).start(on_wait="park")
    async with client(create_app(storage, actions=True)) as http:
        csrf = await csrf_of(http, "/workflows/refund")
        refused = await http.post("/workflows/refund/signal", data={"name": "other", "csrf": csrf})
        assert refused.status_code == 409
        assert "has completed" in refused.text


async def test_an_impossible_wake_time_is_marked_invalid_not_a_500(storage: Storage) -> None:
    await approval(storage).start(on_wait="park")
    blob = await storage.read("refund/run.json")
    assert blob is not None
    raw = json.loads(blob.data)
    raw["due_at"] = 1e300
    raw["waiting"]["approve"]["deadline"] = 1e300
    await storage.write("refund/run.json", json.dumps(raw).encode())
    async with client(create_app(storage)) as http:
        page = await http.get("/workflows/refund")
        assert page.status_code == 200
        assert "invalid deadline 1e+300" in page.text
        home = await http.get("/")
        assert home.status_code == 200
        assert 'href="/workflows/refund"' in home.text


async def test_a_task_downstream_of_a_failure_shows_why_it_was_skipped(storage: Storage) -> None:
    @action
    async def load() -> None:
        raise RuntimeError("down")

    @action
    async def enrich(previous_context: Context) -> Any:
        return previous_context.storage

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="etl")
    flow.task.add(step=load, key="load")
    flow.task.add(step=enrich, key="enrich", depends_on="load")
    await flow.start(keep_going=True)
    async with client(create_app(storage)) as http:
        page = await http.get("/workflows/etl")
        row = re.search(r'<tr data-key="enrich" data-status="skipped">.*?</tr>', page.text, re.S)
        assert row is not None
        assert '<span class="reason">upstream failed</span>' in row.group(0)


async def test_a_live_map_shows_its_childrens_progress(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "LIVE_EVERY", 0.02)
    gate = anyio.Event()

    @action
    async def items() -> list[int]:
        return list(range(6))

    @action
    async def convert(initial_context: Context) -> int:
        if initial_context.storage >= 2:
            await gate.wait()
        return int(initial_context.storage)

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="conv")
    flow.task.add(step=items, key="items")
    flow.task.map(convert, over="items", key="convert")
    async with anyio.create_task_group() as group, client(create_app(storage)) as http:
        group.start_soon(flow.start)
        with anyio.fail_after(30):
            while True:
                await anyio.sleep(0.05)
                page = await http.get("/workflows/conv")
                if "2/6 children" in page.text:
                    break
        assert page.status_code == 200
        assert re.search(r'data-key="convert.5" data-status="pending"', page.text)
        assert re.search(r'data-key="convert.0" data-status="completed"', page.text)
        gate.set()
    assert flow.status == "completed"
