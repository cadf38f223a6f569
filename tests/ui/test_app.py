"""The viewer's pages, error pages and action guards, through its ASGI app (no browser)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from asyncflow import AsyncFlow, Config, action
from asyncflow._kernel.errors import StorageUnavailable
from asyncflow._kernel.layout import manifest_key, task_storage_key
from asyncflow._kernel.manifest import Manifest
from asyncflow.cli import cli
from asyncflow.providers import Blob, Storage, StorageDefault
from asyncflow.serializers import PickleSerializer
from asyncflow.ui import create_app
from asyncflow.ui._catalog import Catalog
from asyncflow.ui._guard import CSRF_COOKIE
from tests.ui import demo

pytestmark = pytest.mark.anyio


def client(app: Any, base: str = "http://127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


@pytest.fixture
async def memory() -> AsyncIterator[Storage]:
    store = StorageDefault()
    await demo.fill(store, big=20)
    yield store
    await store.aclose()


async def test_every_page_over_every_backend(storage: Storage) -> None:
    await demo.fill(storage, big=20)
    async with client(create_app(storage)) as http:
        home = await http.get("/")
        assert home.status_code == 200
        for name in ("daily-etl", "orders-sync", "thumbnails", "big-batch", "refund-approval"):
            assert f'href="/workflows/{name}"' in home.text
        failed = await http.get("/", params={"status": "failed"})
        assert re.findall(r'href="/workflows/([^"]+)"', failed.text) == ["orders-sync"]
        waiting = await http.get("/workflows/refund-approval")
        assert "for signal <b>approve</b>" in waiting.text
        assert waiting.headers["x-asyncflow-live"] == "1"
        found = await http.get("/", params={"q": "BATCH"})
        assert re.findall(r'href="/workflows/([^"]+)"', found.text) == ["big-batch"]

        run = await http.get("/workflows/orders-sync")
        assert run.status_code == 200
        assert "warehouse refused the connection &lt;script&gt;" in run.text
        assert "<script>alert" not in run.text
        assert 'data-status="failed"><title>load (key load): failed</title>' in run.text
        assert 'fill="#f44336"' in run.text
        assert 'fill="#4caf50"' in run.text
        assert run.text.count('<g class="bar"') == 4

        assert "Traceback (most recent call last)" in run.text
        assert "ConnectionError: warehouse refused" in run.text
        history = await http.get("/workflows/orders-sync/runs")
        assert history.status_code == 200
        runs = re.findall(r'href="/workflows/orders-sync/runs/([^"]+)"', history.text)
        assert len(runs) == 1
        past = await http.get(f"/workflows/orders-sync/runs/{runs[0]}")
        assert past.status_code == 200
        assert "Traceback (most recent call last)" in past.text
        failed_task = await http.get("/workflows/orders-sync/tasks/load")
        assert "Traceback (most recent call last)" in failed_task.text
        nope = await http.get("/workflows/orders-sync/runs/20990101T000000.000000Z-000000")
        assert nope.status_code == 404
        task = await http.get("/workflows/daily-etl/tasks/extract")
        assert task.status_code == 200
        assert "row &lt;0&gt;" in task.text
        big = await http.get("/workflows/big-batch")
        assert big.text.count('<g class="node"') == 20


async def test_the_workflows_page_is_paginated_newest_first() -> None:
    store = StorageDefault()
    for i in range(120):
        manifest = Manifest(f"wf-{i:03d}", "completed", None, "sequential", ("0",), i, 1000.0 + i)
        await store.write(manifest_key(manifest.workflow_id), manifest.encode())
    async with client(create_app(store)) as http:
        first = await http.get("/")
        ids = re.findall(r'href="/workflows/([^"]+)"', first.text)
        assert ids == [f"wf-{i:03d}" for i in range(119, 69, -1)]
        assert "page 1 of 3" in first.text
        last = await http.get("/", params={"page": "3"})
        assert re.findall(r'href="/workflows/([^"]+)"', last.text)[0] == "wf-019"
        assert len(re.findall(r'href="/workflows/([^"]+)"', last.text)) == 20
        beyond = await http.get("/", params={"page": "99"})
        assert "page 3 of 3" in beyond.text
        bad = await http.get("/", params={"page": "x"})
        assert bad.status_code == 400


class Counting:
    """A storage that counts reads and listings, and can be made to fail."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.reads: list[str] = []
        self.lists = 0
        self.down = False

    @property
    def persistent(self) -> bool:
        return True

    async def read(self, key: str) -> Blob | None:
        if self.down:
            raise StorageUnavailable("cannot reach the bucket (connection refused)")
        self.reads.append(key)
        return await self.inner.read(key)

    async def write(self, key: str, data: bytes, **kwargs: Any) -> str:
        return await self.inner.write(key, data, **kwargs)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        if self.down:
            raise StorageUnavailable("cannot reach the bucket (connection refused)")
        self.lists += 1
        async for key in self.inner.list(prefix):
            yield key

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_index_reads_run_json_only_and_refreshes_incrementally(memory: Storage) -> None:
    counting = Counting(memory)
    now = [0.0]
    catalog = Catalog(counting, ttl=2.0, max_age=30.0, clock=lambda: now[0])  # type: ignore[arg-type]
    rows = await catalog.rows()
    assert len(rows) == 5
    assert counting.lists == 1
    assert sorted(counting.reads) == sorted(f"{r.workflow_id}/run.json" for r in rows)
    counting.reads.clear()
    await catalog.rows()  # within ttl: nothing read
    assert counting.lists == 1
    assert counting.reads == []
    now[0] = 5.0
    await catalog.rows()  # nothing changed: a listing, and the run not finished (waiting)
    assert counting.lists == 2
    assert counting.reads == ["refund-approval/run.json"]
    counting.reads.clear()
    manifest = Manifest("newcomer", "completed", None, "sequential", ("0",), 1.0, 2.0)
    await memory.write(manifest_key("newcomer"), manifest.encode())
    now[0] = 10.0
    await catalog.rows()  # a new workflow: its run.json, and the waiting one's again
    assert sorted(counting.reads) == ["newcomer/run.json", "refund-approval/run.json"]
    counting.reads.clear()
    now[0] = 40.0
    await catalog.rows()  # max_age passed: all again
    assert len(counting.reads) == 6


async def test_bad_input_is_a_clear_page_never_a_traceback(memory: Storage) -> None:
    counting = Counting(memory)
    async with client(create_app(counting)) as http:  # type: ignore[arg-type]
        unknown = await http.get("/workflows/nope")
        assert unknown.status_code == 404
        assert "no workflow &#39;nope&#39; in this storage" in unknown.text
        bad = await http.get("/workflows/%20bad")
        assert bad.status_code == 400
        assert "not allowed" in bad.text
        no_task = await http.get("/workflows/daily-etl/tasks/zzz")
        assert no_task.status_code == 404
        assert "no task with key" in no_task.text
        nowhere = await http.get("/no/such/page")
        assert nowhere.status_code == 404

        await memory.write(manifest_key("daily-etl"), b'{"asyncflow": 1, "status": 3}')
        corrupt = await http.get("/workflows/daily-etl")
        assert corrupt.status_code == 500
        assert "Corrupt record" in corrupt.text
        assert "daily-etl/run.json" in corrupt.text
        listed = await http.get("/")
        assert listed.status_code == 200
        assert "corrupt" in listed.text

        await memory.write(task_storage_key("orders-sync", "transform"), b"not json")
        partly = await http.get("/workflows/orders-sync")
        assert partly.status_code == 200  # an ended run is drawn from its summary
        task = await http.get("/workflows/orders-sync/tasks/transform")
        assert task.status_code == 200
        assert "orders-sync/tasks/transform.json is not valid JSON" in task.text

        counting.down = True
        down = await http.get("/workflows/orders-sync")
        assert down.status_code == 503
        assert "Storage unreachable" in down.text
        assert "connection refused" in down.text
        for page in (unknown, bad, corrupt, down):
            assert "Traceback" not in page.text


async def test_an_unexpected_error_is_logged_not_shown(
    memory: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Counting):
        async def read(self, key: str) -> Blob | None:
            raise RuntimeError("disk on fire")

    async with client(create_app(Broken(memory))) as http:  # type: ignore[arg-type]
        page = await http.get("/workflows/daily-etl")
    assert page.status_code == 500
    assert "RuntimeError: disk on fire" in page.text
    assert "Traceback" not in page.text
    assert any(record.exc_info for record in caplog.records)


async def test_live_region_and_security_headers(memory: Storage) -> None:
    async with client(create_app(memory)) as http:
        full = await http.get("/workflows/daily-etl")
        partial = await http.get("/workflows/daily-etl", headers={"X-Asyncflow-Partial": "1"})
        css = await http.get("/static/ui.css")
        js = await http.get("/static/ui.js")
    assert "<html" in full.text
    assert "<html" not in partial.text
    assert "<h1>daily-etl" in partial.text
    assert partial.headers["x-asyncflow-live"] == "0"
    policy = full.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert full.headers["x-content-type-options"] == "nosniff"
    assert css.status_code == 200
    assert js.status_code == 200
    assert "http" not in re.sub(r"http://www\.w3\.org/2000/svg", "", full.text)


async def test_mounted_under_a_prefix_every_link_keeps_it(memory: Storage) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/flows", create_app(memory))])
    async with client(outer) as http:
        page = await http.get("/flows/")
        run = await http.get("/flows/workflows/daily-etl")
    assert page.status_code == 200
    links = re.findall(r'(?:href|src)="([^"]+)"', page.text + run.text)
    assert links
    assert all(link.startswith(("/flows/", "data:")) for link in links), links


async def test_allowed_hosts_refuse_a_rebound_name(memory: Storage) -> None:
    app = create_app(memory, allowed_hosts=["127.0.0.1"])
    async with client(app, "http://evil.example") as http:
        assert (await http.get("/")).status_code == 400
    async with client(app) as http:
        assert (await http.get("/")).status_code == 200


async def csrf_of(http: httpx.AsyncClient, path: str) -> str:
    page = await http.get(path)
    cookie = page.cookies.get(CSRF_COOKIE) or http.cookies.get(CSRF_COOKIE)
    assert cookie is not None
    assert f'name="csrf" value="{cookie}"' in page.text
    return cookie


async def test_actions_are_refused_without_csrf_token_or_switch(memory: Storage) -> None:
    async with client(create_app(memory)) as http:
        off = await http.post("/workflows/orders-sync/reset", data={"key": "load"})
        assert off.status_code == 403
        assert "Actions are off" in off.text
        assert CSRF_COOKIE not in (await http.get("/workflows/orders-sync")).cookies

    async with client(create_app(memory, actions=True, token="s3cret")) as http:
        csrf = await csrf_of(http, "/workflows/orders-sync")
        url = "/workflows/orders-sync/reset"
        missing = await http.post(url, data={"key": "load", "token": "s3cret"})
        assert missing.status_code == 403
        assert "CSRF check failed" in missing.text
        wrong = await http.post(url, data={"key": "load", "csrf": "x" * 43, "token": "s3cret"})
        assert wrong.status_code == 403
        cross = await http.post(
            url,
            data={"key": "load", "csrf": csrf, "token": "s3cret"},
            headers={"Origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        assert "Cross-site" in cross.text
        no_token = await http.post(url, data={"key": "load", "csrf": csrf})
        assert no_token.status_code == 403
        assert "Token required" in no_token.text
        bad_token = await http.post(url, data={"key": "load", "csrf": csrf, "token": "nope"})
        assert bad_token.status_code == 403
        as_json = await http.post(url, json={"key": "load"})
        assert as_json.status_code == 415
        bad_payload = await http.post(
            "/workflows/orders-sync/signal",
            data={"name": "go", "payload": "{nope", "csrf": csrf, "token": "s3cret"},
        )
        assert bad_payload.status_code == 400
        assert "not valid JSON" in bad_payload.text


class Boom:
    """Unpickling this would record that it happened."""

    unpickled: list[str] = []  # noqa: RUF012

    def __reduce__(self) -> Any:
        return (Boom.unpickled.append, ("unpickled!",))


@action
async def risky() -> Boom:
    return Boom()


async def test_a_pickled_output_is_never_unpickled() -> None:
    store = StorageDefault()
    flow = AsyncFlow(
        config=Config(storage=store, serializer=PickleSerializer()), workflow_id="pickled"
    )
    flow.task.add(step=risky)
    await flow.start()
    Boom.unpickled.clear()
    async with client(create_app(store)) as http:
        run = await http.get("/workflows/pickled")
        task = await http.get("/workflows/pickled/tasks/risky")
    assert run.status_code == 200
    assert task.status_code == 200
    assert "the viewer never unpickles" in task.text
    assert Boom.unpickled == []


def test_the_cli_refuses_actions_on_an_open_host_without_a_token() -> None:
    result = CliRunner().invoke(cli, ["ui", "--host", "0.0.0.0", "--actions"])
    assert result.exit_code == 2
    assert "needs --token" in result.output


def test_the_cli_help_names_the_options() -> None:
    result = CliRunner().invoke(cli, ["ui", "--help"])
    assert result.exit_code == 0
    for option in ("--storage", "--host", "--port", "--actions", "--token"):
        assert option in result.output


def test_timestamps_render_in_utc() -> None:
    from asyncflow.ui._app import _took, _when

    assert _when(0) == "-"
    assert _when(86400.0) == "1970-01-02 00:00:00 UTC"
    assert _took(0.25) == "250 ms"
    assert _took(3.0) == "3.00 s"
    assert _took(600) == "10.0 min"


async def test_a_stale_index_is_served_then_refreshed_after_the_response(memory: Storage) -> None:
    now = [0.0]
    catalog = Catalog(memory, ttl=2.0, clock=lambda: now[0])
    assert len(await catalog.rows(fresh=False)) == 5  # no index yet: built at once
    manifest = Manifest("new-one", "running", None, "sequential", ("0",), 1.0, 2e9)
    await memory.write(manifest_key("new-one"), manifest.encode())
    now[0] = 10.0
    assert catalog.stale
    assert len(await catalog.rows(fresh=False)) == 5
    await catalog.refresh()
    rows = await catalog.rows(fresh=False)
    assert rows[0].workflow_id == "new-one"
    assert not catalog.stale


async def test_the_task_page_reads_one_record_not_the_run(memory: Storage) -> None:
    counting = Counting(memory)
    async with client(create_app(counting)) as http:  # type: ignore[arg-type]
        page = await http.get("/workflows/big-batch/tasks/part_7")
    assert page.status_code == 200
    assert [k for k in counting.reads if "/tasks/" in k] == ["big-batch/tasks/part_7.json"]
    assert counting.lists == 0


async def test_a_run_page_reads_again_only_records_that_appeared(memory: Storage) -> None:
    counting = Counting(memory)
    blob = await memory.read(manifest_key("big-batch"))
    assert blob is not None
    running = Manifest.decode(blob.data, "run.json").replace(status="running")
    await memory.write(manifest_key("big-batch"), running.encode())  # not ended: records
    app = create_app(counting)  # type: ignore[arg-type]
    async with client(app) as http:
        await http.get("/workflows/big-batch")
        tasks = [k for k in counting.reads if "/tasks/" in k]
        assert len(tasks) == 20
        counting.reads.clear()
        await http.get("/workflows/big-batch")
        assert [k for k in counting.reads if "/tasks/" in k] == []

        record = await memory.read(task_storage_key("big-batch", "part_3"))
        assert record is not None
        await memory.delete(task_storage_key("big-batch", "part_3"))
        await http.get("/workflows/big-batch")
        await memory.write(task_storage_key("big-batch", "part_3"), record.data)
        counting.reads.clear()
        await http.get("/workflows/big-batch")
        assert [k for k in counting.reads if "/tasks/" in k] == ["big-batch/tasks/part_3.json"]

        another = running.replace(run_id="20990101T000000.000000Z-abcdef")
        await memory.write(manifest_key("big-batch"), another.encode())
        counting.reads.clear()
        await http.get("/workflows/big-batch")  # another run: everything again
        assert len([k for k in counting.reads if "/tasks/" in k]) == 20


async def test_unlocking_with_the_token_lets_this_browser_act(memory: Storage) -> None:
    async with client(create_app(memory, actions=True, token="s3cret")) as http:
        locked = await http.get("/workflows/orders-sync")
        assert "Unlock actions" in locked.text
        assert "reset from here" not in locked.text
        csrf = await csrf_of(http, "/workflows/orders-sync")
        wrong = await http.post("/unlock", data={"csrf": csrf, "token": "nope"})
        assert wrong.status_code == 403
        assert "Wrong token" in wrong.text
        evil = await http.post(
            "/unlock", data={"csrf": csrf, "token": "s3cret", "next": "//evil.example/"}
        )
        assert evil.status_code == 303
        assert evil.headers["location"] == "/"
        assert "s3cret" not in evil.headers["set-cookie"]
        page = await http.get("/workflows/orders-sync")
        assert "reset from here" in page.text
        assert "Unlock actions" not in page.text
        acted = await http.post(
            "/workflows/orders-sync/reset", data={"key": "transform", "csrf": csrf}
        )
        assert acted.status_code == 303
        assert "reset+from+transform" in acted.headers["location"]
        after = await http.get("/workflows/orders-sync")
        listed = await http.get("/", params={"status": "reset"})
    assert '<span class="badge s-reset">reset</span>' in after.text
    assert 'href="/workflows/orders-sync"' in listed.text
    assert await memory.read(task_storage_key("orders-sync", "transform")) is None
    assert await memory.read(task_storage_key("orders-sync", "extract")) is not None
    blob = await memory.read(manifest_key("orders-sync"))
    assert blob is not None
    assert Manifest.decode(blob.data, "run.json").outcomes["transform"] == "not run"


async def test_the_history_lists_every_run_newest_first(memory: Storage) -> None:
    for _ in range(2):
        flow = AsyncFlow(config=Config(storage=memory), workflow_id="daily-etl")
        for step in (demo.extract, demo.transform, demo.report):
            flow.task.add(step=step)
        await flow.start(resume=True)
    async with client(create_app(memory)) as http:
        page = await http.get("/workflows/daily-etl/runs")
    ids = re.findall(r'<tr data-run="([^"]+)"', page.text)
    assert len(ids) == 3
    assert ids == sorted(ids, reverse=True)
    assert "3 runs" in page.text


async def test_a_graph_run_draws_its_fan_out_map_and_child_flow() -> None:
    store = StorageDefault()
    await demo.graph(store)
    async with client(create_app(store)) as http:
        run = await http.get("/workflows/catalog-graph")
        child = await http.get("/workflows/catalog-graph/tasks/audit")
        mapped = await http.get("/workflows/catalog-graph/tasks/fetch.3")
        sub = await http.get("/workflows/catalog-graph.audit")
    assert run.status_code == 200
    nodes = re.findall(r'<g class="node" data-key="([^"]+)" data-status="([^"]+)"', run.text)
    assert nodes == [
        ("extract", "completed"),
        ("pages", "completed"),
        ("fetch", "failed"),
        ("fetch[*]", "failed"),
        ("audit", "completed"),
        ("join", "skipped"),  # its dependency fetch failed
    ]
    assert "fetch: 15 mapped tasks: 14 completed, 1 failed" in run.text
    assert run.text.count('class="edge"') == 6  # fetch[*] fans in to join: one edge
    assert 'stroke-dasharray="5 3"' in run.text  # the child flow
    assert 'href="/workflows/catalog-graph.audit"' in child.text
    assert mapped.status_code == 200
    assert "depends on" in mapped.text
    assert sub.status_code == 200


@action
async def big_output() -> str:
    return "x" * 5000


async def test_an_offloaded_output_is_named_not_read() -> None:
    store = StorageDefault()
    flow = AsyncFlow(config=Config(storage=store, offload_over=1000), workflow_id="large")
    flow.task.add(step=big_output)
    await flow.start()
    counting = Counting(store)
    async with client(create_app(counting)) as http:  # type: ignore[arg-type]
        task = await http.get("/workflows/large/tasks/big_output")
    assert task.status_code == 200
    assert "a large output, stored once in blobs/" in task.text
    assert not [key for key in counting.reads if "/blobs/" in key]


async def test_approving_a_waiting_run_sends_its_signal(memory: Storage) -> None:
    async with client(create_app(memory, actions=True)) as http:
        csrf = await csrf_of(http, "/workflows/refund-approval")
        page = await http.get("/workflows/refund-approval")
        assert "Approve: send approve" in page.text
        sent = await http.post(
            "/workflows/refund-approval/signal",
            data={"name": "approve", "payload": '{"by": "ops"}', "csrf": csrf},
        )
        assert sent.status_code == 303
        assert "signal+approve+sent" in sent.headers["location"]
        again = await http.post(
            "/workflows/refund-approval/signal", data={"name": "approve", "csrf": csrf}
        )
        assert again.status_code == 409
        assert "already sent" in again.text
    resumed = await demo.approval(memory)
    assert resumed.status == "completed"
    assert resumed.result_task()[-1].current_context.storage == "done"
