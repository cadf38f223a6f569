"""StorageS3 beyond the shared conformance suite, against SeaweedFS and moto.

Configuration from the environment, client lifetime, error mapping,
interoperability with plain boto3, batch deletes, and the retried
conditional write whose first answer was lost (through a real proxy).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from asyncflow._kernel.errors import (
    ConfigurationError,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)
from asyncflow.providers.s3 import StorageS3
from tests.servers import DroppingProxy, S3Server, _free_ports, _reset_moto

pytestmark = pytest.mark.anyio

_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
)


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """aiobotocore is asyncio-only; trio is covered by ``test_trio_is_refused``."""
    return request.param


@pytest.fixture(params=["seaweedfs", "moto"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    server: S3Server = request.getfixturevalue(f"{request.param}_server")
    if server.name == "moto":
        _reset_moto(server)
    return server


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No AWS settings leak in from the machine running the tests."""
    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _prefix() -> str:
    import secrets

    return f"s3test-{secrets.token_hex(4)}"


@pytest.fixture
async def s3(s3_server: S3Server) -> AsyncIterator[StorageS3]:
    async with StorageS3(s3_server.bucket, _prefix(), **s3_server.client_kwargs()) as storage:
        yield storage


# -- packaging -----------------------------------------------------------------


def test_import_without_aiobotocore_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["aiobotocore"] = None  # as if the extra were not installed
        try:
            from asyncflow.providers import StorageS3
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without aiobotocore")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'asyncflow-durable[s3]'" in out.stdout


def test_core_does_not_import_the_sdk() -> None:
    code = "import asyncflow, asyncflow.providers, sys; print('aiobotocore' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


# -- construction ------------------------------------------------------------------


def test_prefix_is_normalised_and_validated() -> None:
    assert StorageS3("b", "/a/b/").prefix == "a/b/"
    assert StorageS3("b").prefix == ""
    for bad in ("../x", "a//b", ".hidden", "a/../b"):
        with pytest.raises(ConfigurationError):
            StorageS3("b", bad)
    for bucket in ("", "a/b"):
        with pytest.raises(ConfigurationError):
            StorageS3(bucket)


def test_client_options_botocore_does_not_take_are_refused_at_construction() -> None:
    """Not at the first ``start()``: the bad name and the accepted ones are in the message."""
    with pytest.raises(ConfigurationError, match=r"got project=, .*region_name, .*endpoint_url"):
        StorageS3("b", project="p")
    with pytest.raises(ConfigurationError, match="region= or region_name=, not both"):
        StorageS3("b", region="eu-west-1", region_name="eu-west-3")


def test_repr_never_shows_credentials() -> None:
    storage = StorageS3("b", "p", aws_access_key_id="AKIAX", aws_secret_access_key="hunter2")
    assert "hunter2" not in repr(storage)
    assert "AKIAX" not in repr(storage)


def test_trio_is_refused_with_a_clear_error() -> None:
    async def main() -> None:
        await StorageS3("b").read("k")

    with pytest.raises(ConfigurationError, match="asyncio"):
        anyio.run(main, backend="trio")


# -- configuration ----------------------------------------------------------------


@pytest.mark.usefixtures("clean_aws_env")
async def test_configuration_from_the_environment(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    async with StorageS3(s3_server.bucket, _prefix()) as storage:
        version = await storage.write("wf/run.json", b"{}")
        blob = await storage.read("wf/run.json")
        assert blob is not None
        assert blob.version == version
        client = await storage.client()
        assert client.meta.region_name == "eu-west-3"
        assert client.meta.endpoint_url == s3_server.endpoint_url


@pytest.mark.usefixtures("clean_aws_env")
async def test_dotflows_region_is_the_clients_region_name(s3_server: S3Server) -> None:
    """``StorageS3(bucket=..., region=...)`` as Dotflow's docs write it, then a real run."""
    from asyncflow import AsyncFlow, Config, action

    options = s3_server.client_kwargs()
    del options["region_name"]

    @action
    async def extract() -> dict[str, bool]:
        return {"extracted": True}

    storage = StorageS3(bucket=s3_server.bucket, prefix=_prefix(), region="eu-west-3", **options)
    async with storage:
        flow = AsyncFlow(config=Config(storage=storage), workflow_id="dotflow-region")
        flow.task.add(step=extract)
        await flow.start(resume=True)
        assert flow.status == "completed"
        assert (await storage.client()).meta.region_name == "eu-west-3"
        assert await storage.read("dotflow-region/tasks/extract.json") is not None


@pytest.mark.usefixtures("clean_aws_env")
async def test_explicit_arguments_override_the_environment(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    (closed,) = _free_ports(1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    async with StorageS3(s3_server.bucket, _prefix(), **s3_server.client_kwargs()) as storage:
        await storage.write("k.json", b"1")
        assert (await storage.read("k.json")) is not None


@pytest.mark.usefixtures("clean_aws_env")
async def test_user_config_is_merged_with_the_retry_defaults(s3_server: S3Server) -> None:
    config = AioConfig(read_timeout=7)
    storage = StorageS3(s3_server.bucket, _prefix(), config=config, **s3_server.client_kwargs())
    async with storage:
        client = await storage.client()
        assert client.meta.config.read_timeout == 7
        assert client.meta.config.retries["mode"] == "standard"


@pytest.mark.usefixtures("clean_aws_env")
async def test_connection_pool_holds_a_resumes_reads_in_flight(s3_server: S3Server) -> None:
    """botocore keeps 10 connections by default: 32 resume reads would queue for them."""
    from asyncflow._core.config import Config
    from asyncflow.providers.s3 import MAX_POOL_CONNECTIONS

    assert Config().read_concurrency <= MAX_POOL_CONNECTIONS
    async with StorageS3(s3_server.bucket, _prefix(), **s3_server.client_kwargs()) as storage:
        client = await storage.client()
        assert client.meta.config.max_pool_connections == MAX_POOL_CONNECTIONS
    config = AioConfig(max_pool_connections=3)
    storage = StorageS3(s3_server.bucket, _prefix(), config=config, **s3_server.client_kwargs())
    async with storage:
        assert (await storage.client()).meta.config.max_pool_connections == 3


# -- client lifetime ------------------------------------------------------------------


async def test_one_client_per_storage_created_lazily_and_closed(s3_server: S3Server) -> None:
    storage = StorageS3(s3_server.bucket, _prefix(), **s3_server.client_kwargs())
    clients = await asyncio.gather(*(storage.client() for _ in range(10)))
    assert all(client is clients[0] for client in clients), "concurrent first use made two"
    await storage.write("a.json", b"1")
    await storage.read("a.json")
    assert await storage.client() is clients[0], "a call made a new client"
    await storage.aclose()
    await storage.aclose()  # idempotent
    async with storage:
        assert await storage.client() is not clients[0], "a closed client was reused"


async def test_a_client_passed_in_is_used_and_left_open(s3_server: S3Server) -> None:
    async with get_session().create_client("s3", **s3_server.client_kwargs()) as client:
        async with StorageS3(s3_server.bucket, _prefix(), client=client) as storage:
            assert await storage.client() is client
            await storage.write("a.json", b"1")
        # still open: the storage did not close what it does not own
        await client.head_bucket(Bucket=s3_server.bucket)


def test_client_and_client_options_are_exclusive() -> None:
    with pytest.raises(ConfigurationError):
        StorageS3("b", client=object(), endpoint_url="http://127.0.0.1:1")


# -- interoperability --------------------------------------------------------------------


async def test_records_are_plain_objects_boto3_reads_at_the_documented_keys(
    s3_server: S3Server,
) -> None:
    prefix = _prefix()
    records = {
        "wf-1/run.json": b'{"status": "running"}',
        "wf-1/lease.json": b'{"owner": "me"}',
        "wf-1/tasks/0.json": b'{"output": 1}',
        "wf-1/tasks/1.json": b'{"output": 2}',
    }
    async with StorageS3(s3_server.bucket, prefix, **s3_server.client_kwargs()) as storage:
        versions = {key: await storage.write(key, data) for key, data in records.items()}

        boto3 = s3_server.boto3_client()
        listed = await anyio.to_thread.run_sync(
            lambda: boto3.list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{prefix}/wf-1/")
        )
        assert sorted(o["Key"] for o in listed["Contents"]) == sorted(
            f"{prefix}/{key}" for key in records
        )
        for key, data in records.items():
            got = await anyio.to_thread.run_sync(
                lambda key=key: boto3.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/{key}")
            )
            assert got["Body"].read() == data
            assert got["ETag"] == versions[key]
            assert got["ContentType"] == "application/json"

        # and the other way round: an object boto3 wrote is a record
        await anyio.to_thread.run_sync(
            lambda: boto3.put_object(
                Bucket=s3_server.bucket, Key=f"{prefix}/wf-1/tasks/2.json", Body=b"3"
            )
        )
        blob = await storage.read("wf-1/tasks/2.json")
        assert blob is not None
        assert blob.data == b"3"
        assert [k async for k in storage.list("wf-1/tasks/")] == [
            "wf-1/tasks/0.json",
            "wf-1/tasks/1.json",
            "wf-1/tasks/2.json",
        ]


# -- batch delete ----------------------------------------------------------------------


async def test_delete_many_crosses_the_1000_key_batch(s3: StorageS3) -> None:
    keys = [f"wf/tasks/{i:04d}.json" for i in range(1234)]
    limiter = anyio.CapacityLimiter(32)

    async def put(key: str) -> None:
        async with limiter:
            await s3.write(key, b"{}")

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(put, key)
    await s3.write("wf/run.json", b"{}")
    await s3.delete_many([*keys, "wf/tasks/never-written.json"])
    assert [k async for k in s3.list("wf/")] == ["wf/run.json"]
    await s3.delete_many([])


async def test_delete_many_validates_every_key_before_deleting(s3: StorageS3) -> None:
    await s3.write("keep.json", b"1")
    with pytest.raises(ConfigurationError):
        await s3.delete_many(["keep.json", "../escape"])
    assert await s3.read("keep.json") is not None


# -- error mapping ------------------------------------------------------------------------


async def test_a_missing_bucket_is_a_storage_error_naming_it(s3_server: S3Server) -> None:
    bucket = "no-such-bucket-" + _prefix()
    async with StorageS3(bucket, "p", **s3_server.client_kwargs()) as storage:
        for call in (
            lambda: storage.read("wf/run.json"),
            lambda: storage.write("wf/run.json", b"1"),
            lambda: storage.write("wf/run.json", b"1", if_absent=True),
            lambda: storage.write("wf/run.json", b"1", if_version='"abc"'),
            lambda: storage.delete_many(["wf/run.json"]),
            lambda: _drain(storage.list("wf/")),
        ):
            with pytest.raises(StorageError) as caught:
                await call()
            assert not isinstance(caught.value, PreconditionFailed)
            assert bucket in str(caught.value)
            assert s3_server.secret_key not in _chain_text(caught.value)


async def test_wrong_credentials_are_refused_without_leaking_secrets(
    seaweedfs_server: S3Server,
) -> None:
    kwargs = seaweedfs_server.client_kwargs()
    kwargs["aws_secret_access_key"] = "not-the-secret-0123456789"
    async with StorageS3(seaweedfs_server.bucket, _prefix(), **kwargs) as storage:
        for call in (lambda: storage.read("k.json"), lambda: storage.write("k.json", b"1")):
            with pytest.raises(StorageError, match="refused") as caught:
                await call()
            assert not isinstance(caught.value, StorageUnavailable)
            text = _chain_text(caught.value)
            assert "not-the-secret-0123456789" not in text
            assert seaweedfs_server.secret_key not in text
            assert seaweedfs_server.bucket in str(caught.value)


async def test_an_unreachable_server_is_storage_unavailable() -> None:
    (closed,) = _free_ports(1)
    config = AioConfig(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2)
    async with StorageS3(
        "bkt",
        "p",
        endpoint_url=f"http://127.0.0.1:{closed}",
        aws_access_key_id="id",
        aws_secret_access_key="very-secret-value",
        region_name="us-east-1",
        config=config,
    ) as storage:
        with pytest.raises(StorageUnavailable) as caught:
            await storage.read("wf/run.json")
        assert "s3://bkt/p/wf/run.json" in str(caught.value)
        assert "very-secret-value" not in _chain_text(caught.value)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SlowDown", 503, StorageUnavailable),
        ("InternalError", 500, StorageUnavailable),
        ("Throttling", 400, StorageUnavailable),
        ("AccessDenied", 403, StorageError),
        ("NoSuchBucket", 404, StorageError),
        ("InvalidArgument", 400, StorageError),
    ],
)
def test_service_errors_map_to_asyncflow_errors(
    code: str, status: int, expected: type[StorageError]
) -> None:
    """The mapping table for answers these servers cannot be made to give."""
    error = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )
    mapped = StorageS3("bkt", "p")._error("read", "p/k.json", error)
    assert type(mapped) is expected
    assert "s3://bkt/p/k.json" in str(mapped)


@pytest.mark.parametrize(
    ("code", "status", "compare_and_swap", "precondition"),
    [
        ("PreconditionFailed", 412, False, True),
        ("ConditionalRequestConflict", 409, False, True),
        ("NoSuchKey", 404, True, True),
        ("NoSuchKey", 404, False, False),
        ("NoSuchBucket", 404, True, False),
        ("AccessDenied", 403, True, False),
    ],
)
def test_precondition_variants(
    code: str, status: int, compare_and_swap: bool, precondition: bool
) -> None:
    """412, real S3's 409 and some servers' 404 for If-Match all mean "lost"."""
    error = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )
    assert StorageS3("bkt")._is_precondition(error, compare_and_swap) is precondition


# -- a retried conditional write whose first answer was lost ---------------------------------


async def test_a_retried_create_that_landed_is_reported_as_won(
    seaweedfs_server: S3Server,
) -> None:
    prefix = _prefix()
    kwargs = seaweedfs_server.client_kwargs()
    async with DroppingProxy(seaweedfs_server.endpoint_url) as proxy:
        kwargs["endpoint_url"] = proxy.url
        async with StorageS3(seaweedfs_server.bucket, prefix, **kwargs) as storage:
            version = await storage.write("lease.json", b"mine", if_absent=True)
        assert proxy.dropped == 1, "the fault was not injected"
    async with StorageS3(
        seaweedfs_server.bucket, prefix, **seaweedfs_server.client_kwargs()
    ) as direct:
        blob = await direct.read("lease.json")
    assert blob is not None
    assert (blob.data, blob.version) == (b"mine", version)


async def test_a_retried_create_that_lost_still_fails(seaweedfs_server: S3Server) -> None:
    prefix = _prefix()
    async with StorageS3(
        seaweedfs_server.bucket, prefix, **seaweedfs_server.client_kwargs()
    ) as direct:
        await direct.write("lease.json", b"theirs", if_absent=True)
        kwargs = seaweedfs_server.client_kwargs()
        async with DroppingProxy(seaweedfs_server.endpoint_url) as proxy:
            kwargs["endpoint_url"] = proxy.url
            async with StorageS3(seaweedfs_server.bucket, prefix, **kwargs) as storage:
                with pytest.raises(PreconditionFailed):
                    await storage.write("lease.json", b"mine", if_absent=True)
            assert proxy.dropped == 1
        blob = await direct.read("lease.json")
        assert blob is not None
        assert blob.data == b"theirs"


# -- helpers -------------------------------------------------------------------------------


async def _drain(iterator: AsyncIterator[str]) -> list[str]:
    return [item async for item in iterator]


def _chain_text(exc: BaseException) -> str:
    """Everything a traceback of ``exc`` would print, causes included."""
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
