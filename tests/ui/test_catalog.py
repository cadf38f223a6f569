"""The workflows index built in the background: the first page does not wait for it all."""

from __future__ import annotations

import re

import anyio
import pytest

from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow.providers import Blob, Storage, StorageDefault
from asyncflow.ui import create_app
from asyncflow.ui._catalog import Catalog
from tests.ui.test_app import Counting, client

pytestmark = pytest.mark.anyio

WORKFLOWS = 600


class Slow(Counting):
    """Every run.json read takes a while, as on a remote object store; ``gate`` can hold them."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.gate = anyio.Event()
        self.gate.set()

    async def read(self, key: str) -> Blob | None:
        if key.endswith("/run.json"):
            await self.gate.wait()
            await anyio.sleep(0.001)
        return await super().read(key)


async def filled() -> StorageDefault:
    store = StorageDefault()
    for i in range(WORKFLOWS):
        manifest = Manifest(f"wf-{i:04d}", "completed", None, "sequential", ("0",), i, 1e9 + i)
        await store.write(manifest_key(manifest.workflow_id), manifest.encode())
    return store


async def test_the_first_page_shows_what_is_read_and_says_how_much_is_left() -> None:
    slow = Slow(await filled())
    slow.gate = anyio.Event()  # hold every read until the first page was served
    catalog = Catalog(slow, first_wait=0.05, concurrency=8)  # type: ignore[arg-type]
    async with anyio.create_task_group() as group:
        catalog.attach(group)
        first = await catalog.page(fresh=False)
        assert first.reading is not None
        assert first.reading[0] < WORKFLOWS
        slow.gate.set()
        with anyio.fail_after(30):
            while (await catalog.page(fresh=False)).reading is not None:
                await anyio.sleep(0.01)
        done = await catalog.page(fresh=False)
    assert done.reading is None
    assert done.total == WORKFLOWS
    assert done.rows[0].workflow_id == f"wf-{WORKFLOWS - 1:04d}"
    assert sorted(slow.reads) == sorted({f"wf-{i:04d}/run.json" for i in range(WORKFLOWS)})


async def test_the_app_starts_the_index_when_it_starts() -> None:
    slow = Slow(await filled())
    app = create_app(slow)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app), client(app) as http:
        with anyio.fail_after(30):
            while not app.state.catalog.built:  # no page asked for: the lifespan built it
                await anyio.sleep(0.01)
        reads_before = len(slow.reads)
        page = await http.get("/")
    assert reads_before == WORKFLOWS  # read before any page was asked for
    assert page.status_code == 200
    assert "Reading the workflows" not in page.text
    assert len(re.findall(r'href="/workflows/wf-', page.text)) == 50


async def test_a_partial_first_page_polls_until_complete() -> None:
    slow = Slow(await filled())
    slow.gate = anyio.Event()
    app = create_app(slow)  # type: ignore[arg-type]
    app.state.catalog.first_wait = 0.05
    async with app.router.lifespan_context(app), client(app) as http:
        page = await http.get("/")
        slow.gate.set()
    assert page.status_code == 200
    assert re.search(r"Reading the workflows: \d+ of \d+ read so far|Listing the", page.text)
    assert "No workflow in this storage" not in page.text
    assert page.headers["x-asyncflow-live"] == "1"


async def test_a_failed_first_build_is_a_clear_page() -> None:
    store = await filled()
    down = Counting(store)
    down.down = True
    app = create_app(down)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app), client(app) as http:
        await anyio.sleep(0.05)
        page = await http.get("/")
    assert page.status_code == 503
    assert "connection refused" in page.text
