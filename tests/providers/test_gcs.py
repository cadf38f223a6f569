"""StorageGCS beyond the shared conformance suite, against fake-gcs-server.

Configuration (``STORAGE_EMULATOR_HOST``, ``api_root=``, caller-owned
sessions), client lifetime, pagination, interoperability with a plain HTTP
client, error mapping, and the retried conditional write whose first answer
was lost (through a real proxy).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import textwrap
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from gcloud.aio.storage import Storage as GCSClient

from asyncflow._kernel.errors import (
    ConfigurationError,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)
from asyncflow.providers.gcs import StorageGCS
from tests.servers import DroppingProxy, GCSServer, _free_ports

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """gcloud-aio is asyncio-only; trio is covered by ``test_trio_is_refused``."""
    return request.param


@pytest.fixture
def gcs_server(fake_gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch) -> GCSServer:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    return fake_gcs_server


def _prefix() -> str:
    return f"gcstest-{secrets.token_hex(4)}"


@pytest.fixture
async def gcs(gcs_server: GCSServer) -> AsyncIterator[StorageGCS]:
    async with StorageGCS(gcs_server.bucket, _prefix(), api_root=gcs_server.url) as storage:
        yield storage


def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    """A plain HTTP GET with the standard library: the client nobody here wrote."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), dict(exc.headers)


def _object_url(server: GCSServer, name: str, media: bool) -> str:
    quoted = urllib.parse.quote(name, safe="")
    return f"{server.url}/storage/v1/b/{server.bucket}/o/{quoted}" + ("?alt=media" if media else "")


# -- packaging ------------------------------------------------------------------


def test_import_without_gcloud_aio_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["gcloud.aio.storage"] = None  # as if the extra were not installed
        try:
            from asyncflow.providers import StorageGCS
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without gcloud-aio-storage")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'asyncflow-durable[gcs]'" in out.stdout


def test_core_does_not_import_the_sdk() -> None:
    code = "import asyncflow, asyncflow.providers, sys; print('gcloud.aio.storage' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


# -- construction ---------------------------------------------------------------


def test_prefix_bucket_and_options_are_validated() -> None:
    assert StorageGCS("b", "/a/b/").prefix == "a/b/"
    for bad in ("../x", "a//b", ".hidden"):
        with pytest.raises(ConfigurationError):
            StorageGCS("b", bad)
    for bucket in ("", "a/b"):
        with pytest.raises(ConfigurationError):
            StorageGCS(bucket)
    with pytest.raises(ConfigurationError):
        StorageGCS("b", page_size=0)


async def test_dotflows_project_is_refused_before_any_request(gcs_server: GCSServer) -> None:
    """gcloud-aio-storage uses a project only to list buckets: accepting it would mislead."""
    with pytest.raises(ConfigurationError, match=r"StorageGCS takes no project= .*drop it"):
        StorageGCS(bucket=gcs_server.bucket, project="my-gcp-project", api_root=gcs_server.url)
    async with StorageGCS(bucket=gcs_server.bucket, prefix=_prefix(), api_root=gcs_server.url) as s:
        await s.write("wf/run.json", b"{}")
        assert await s.read("wf/run.json") is not None


def test_trio_is_refused_with_a_clear_error() -> None:
    async def main() -> None:
        await StorageGCS("b", api_root="http://127.0.0.1:1").read("k")

    with pytest.raises(ConfigurationError, match="asyncio"):
        anyio.run(main, backend="trio")


# -- configuration -------------------------------------------------------------------


async def test_storage_emulator_host_from_the_environment(
    gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    async with StorageGCS(gcs_server.bucket, _prefix()) as storage:
        version = await storage.write("wf/run.json", b"{}")
        blob = await storage.read("wf/run.json")
        assert blob is not None
        assert blob.version == version


async def test_api_root_overrides_the_environment(
    gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (closed,) = _free_ports(1)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed}")
    async with StorageGCS(gcs_server.bucket, _prefix(), api_root=gcs_server.url) as storage:
        await storage.write("k.json", b"1")
        assert await storage.read("k.json") is not None


# -- client lifetime -------------------------------------------------------------------


async def test_one_client_per_storage_created_lazily_and_closed(gcs_server: GCSServer) -> None:
    storage = StorageGCS(gcs_server.bucket, _prefix(), api_root=gcs_server.url)
    clients = await asyncio.gather(*(storage.client() for _ in range(10)))
    assert all(client is clients[0] for client in clients), "concurrent first use made two"
    await storage.write("a.json", b"1")
    assert await storage.client() is clients[0]
    session = clients[0].session.session
    await storage.aclose()
    assert session.closed, "aclose() left the aiohttp session open"
    await storage.aclose()
    async with storage:
        assert await storage.client() is not clients[0]


async def test_a_caller_owned_session_or_client_is_left_open(gcs_server: GCSServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with StorageGCS(
            gcs_server.bucket, _prefix(), session=session, api_root=gcs_server.url
        ) as storage:
            await storage.write("a.json", b"1")
        assert not session.closed
    async with GCSClient(api_root=gcs_server.url) as client:
        async with StorageGCS(gcs_server.bucket, _prefix(), storage=client) as storage:
            assert await storage.client() is client
            await storage.write("a.json", b"1")
        assert not client.session.session.closed


# -- listing ------------------------------------------------------------------------


async def test_listing_follows_every_page(gcs_server: GCSServer) -> None:
    """With 7 keys a page, 30 keys take 5 requests; all must come back."""
    async with StorageGCS(
        gcs_server.bucket, _prefix(), api_root=gcs_server.url, page_size=7
    ) as storage:
        keys = [f"wf/tasks/{i:02d}.json" for i in range(30)]
        await asyncio.gather(*(storage.write(key, b"{}") for key in keys))
        await storage.write("wf/run.json", b"{}")
        assert [k async for k in storage.list("wf/tasks/")] == keys
        await storage.delete_many([*keys, "wf/run.json", "wf/never.json"])
        assert [k async for k in storage.list("wf/")] == []


# -- interoperability ----------------------------------------------------------------


async def test_records_are_plain_objects_readable_over_the_json_api(
    gcs_server: GCSServer,
) -> None:
    prefix = _prefix()
    records = {
        "wf-1/run.json": b'{"status": "running"}',
        "wf-1/tasks/0.json": b'{"output": 1}',
    }
    async with StorageGCS(gcs_server.bucket, prefix, api_root=gcs_server.url) as storage:
        versions = {key: await storage.write(key, data) for key, data in records.items()}
    for key, data in records.items():
        name = f"{prefix}/{key}"
        status, body, headers = await anyio.to_thread.run_sync(
            _get, _object_url(gcs_server, name, media=True)
        )
        assert status == 200
        assert body == data
        assert {k.lower(): v for k, v in headers.items()}["x-goog-generation"] == versions[key]
        status, meta, _ = await anyio.to_thread.run_sync(
            _get, _object_url(gcs_server, name, media=False)
        )
        resource = json.loads(meta)
        assert resource["name"] == name
        assert resource["generation"] == versions[key]
        assert resource["contentType"] == "application/json"
        assert resource["cacheControl"] == "no-store"
    query = urllib.parse.urlencode({"prefix": f"{prefix}/wf-1/"})
    status, listing, _ = await anyio.to_thread.run_sync(
        _get, f"{gcs_server.url}/storage/v1/b/{gcs_server.bucket}/o?{query}"
    )
    names = sorted(item["name"] for item in json.loads(listing)["items"])
    assert names == sorted(f"{prefix}/{key}" for key in records)


# -- error mapping -----------------------------------------------------------------------


async def test_a_missing_bucket_is_a_storage_error_naming_it(gcs_server: GCSServer) -> None:
    """fake-gcs-server says only "Not Found" for a missing bucket and a missing
    object alike; a missing bucket must still never read as "no checkpoint"."""
    bucket = "no-such-bucket-" + _prefix()
    async with StorageGCS(bucket, "p", api_root=gcs_server.url) as storage:
        for call in (
            lambda: storage.read("wf/run.json"),
            lambda: storage.write("wf/run.json", b"1"),
            lambda: storage.write("wf/run.json", b"1", if_absent=True),
            lambda: storage.delete("wf/run.json"),
            lambda: _drain(storage.list("wf/")),
        ):
            with pytest.raises(StorageError) as caught:
                await call()
            assert not isinstance(caught.value, (PreconditionFailed, StorageUnavailable))
            assert bucket in str(caught.value)


async def test_a_missing_object_in_an_existing_bucket_reads_as_none(gcs: StorageGCS) -> None:
    assert await gcs.read("wf/run.json") is None
    await gcs.delete("wf/run.json")


async def test_an_unreachable_server_is_storage_unavailable() -> None:
    (closed,) = _free_ports(1)
    async with StorageGCS(
        "bkt", "p", api_root=f"http://127.0.0.1:{closed}", retries=1, timeout=2
    ) as storage:
        with pytest.raises(StorageUnavailable) as caught:
            await storage.read("wf/run.json")
        assert "gs://bkt/p/wf/run.json" in str(caught.value)


async def test_a_bearer_token_never_reaches_an_error_message(gcs_server: GCSServer) -> None:
    """Against a server that refuses: the token travels in a header only."""
    secret = "ya29.not-a-real-token-" + secrets.token_hex(8)

    class StaticToken:
        async def get(self) -> str:
            return secret

    async def refuse(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {secret}"
        return web.json_response(
            {"error": {"code": 403, "message": "caller does not have storage.objects.get"}},
            status=403,
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    (port,) = _free_ports(1)
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        # api_is_dev=False: the production path, which sends the bearer token
        client = GCSClient(
            api_root=f"http://127.0.0.1:{port}", api_is_dev=False, token=StaticToken()
        )
        async with client, StorageGCS("bkt", "p", storage=client) as storage:
            with pytest.raises(StorageError, match="refused") as caught:
                await storage.read("wf/run.json")
        assert not isinstance(caught.value, StorageUnavailable)
        assert "storage.objects.get" in str(caught.value)
        assert secret not in _chain_text(caught.value)
    finally:
        await runner.cleanup()


# -- a retried conditional write whose first answer was lost ------------------------------


async def test_a_retried_create_that_landed_is_reported_as_won(gcs_server: GCSServer) -> None:
    prefix = _prefix()
    async with DroppingProxy(gcs_server.url) as proxy:
        async with StorageGCS(gcs_server.bucket, prefix, api_root=proxy.url) as storage:
            version = await storage.write("lease.json", b"mine", if_absent=True)
        assert proxy.dropped == 1, "the fault was not injected"
    async with StorageGCS(gcs_server.bucket, prefix, api_root=gcs_server.url) as direct:
        blob = await direct.read("lease.json")
    assert blob is not None
    assert (blob.data, blob.version) == (b"mine", version)


async def test_a_retried_swap_that_lost_still_fails(gcs_server: GCSServer) -> None:
    prefix = _prefix()
    async with StorageGCS(gcs_server.bucket, prefix, api_root=gcs_server.url) as direct:
        base = await direct.write("lease.json", b"base")
        await direct.write("lease.json", b"theirs", if_version=base)
        async with DroppingProxy(gcs_server.url) as proxy:
            async with StorageGCS(gcs_server.bucket, prefix, api_root=proxy.url) as storage:
                with pytest.raises(PreconditionFailed):
                    await storage.write("lease.json", b"mine", if_version=base)
            assert proxy.dropped == 1
        blob = await direct.read("lease.json")
        assert blob is not None
        assert blob.data == b"theirs"


async def test_a_version_that_is_not_a_generation_never_matches(gcs: StorageGCS) -> None:
    await gcs.write("k.json", b"1")
    with pytest.raises(PreconditionFailed):
        await gcs.write("k.json", b"2", if_version='"an-s3-etag"')


# -- helpers --------------------------------------------------------------------------


async def _drain(iterator: AsyncIterator[str]) -> list[str]:
    return [item async for item in iterator]


def _chain_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
