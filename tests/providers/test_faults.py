"""Object-store faults through a real loopback proxy (``tests/faults.py``).

Between the client and a real server (SeaweedFS and moto for S3,
fake-gcs-server for GCS) the proxy answers 500/503, drops connections before
or after forwarding, cuts replies short and delays requests. Proven here:

* transient faults are retried with backoff and the operation succeeds; the
  proxy's log shows the retries reached the wire;
* persistent faults surface as ``StorageUnavailable`` naming the bucket and
  key, as an asyncflow type (never an SDK exception), without secrets;
* a read that fails is never mistaken for "no checkpoint": a resume whose
  reads fail raises and runs nothing;
* a checkpoint write that fails fails the run with a clear ``StorageError``,
  leaves nothing torn, and the next resume re-runs exactly that step.

Clients are configured tight (1 s timeouts, 4 attempts) so the suite is fast.
``pytest -s`` prints one summary line per backend.
"""

from __future__ import annotations

import functools
import itertools
import re
import secrets
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from asyncflow import AsyncFlow, Config, Context, TaskStatus, action
from asyncflow._kernel.decoding import decode_record
from asyncflow._kernel.errors import StorageError, StorageUnavailable
from asyncflow._kernel.storage import Storage
from asyncflow.serializers import JSONSerializer
from tests.faults import FaultProxy, Request
from tests.servers import GCSServer, S3Server, _reset_moto

pytestmark = pytest.mark.anyio

#: attempts per operation (the first plus retries) in every client here; botocore's
#: backoff before retry n is rand(0, 1) * 2**(n-1) s, so more would make S3 tests slow
ATTEMPTS = 3
#: attempts in tests whose faults are persistent (they only wait out the backoff)
FEW = 2
#: per-request timeout, seconds
TIMEOUT = 1.0

#: backend -> what happened, printed once per backend at the end of the module
TALLY: dict[str, Counter[str]] = {}


@pytest.fixture
def anyio_backend() -> Any:
    """aiobotocore and gcloud-aio run on asyncio only."""
    return ("asyncio", {})


# -- the backends ----------------------------------------------------------------------


@dataclass
class Backend:
    """How to reach one server directly or through a proxy, and read its wire."""

    name: str
    upstream: str
    bucket: str
    secret: str
    make: Callable[[str, str, int], Storage]  # (endpoint, prefix, attempts) -> storage
    write_method: str

    def storage(
        self, prefix: str, endpoint: str | None = None, attempts: int = ATTEMPTS
    ) -> Storage:
        return self.make(endpoint or self.upstream, prefix, attempts)

    def object_name(self, request: Request) -> str:
        """The object a request is about ("" for bucket-level requests)."""
        if self.name.startswith("s3"):
            return request.path.removeprefix(f"/{self.bucket}").lstrip("/")
        if request.path.startswith("/upload/"):
            # a multipart upload names its object in the JSON metadata part
            named = re.search(rb'"name"\s*:\s*"([^"]+)"', request.body)
            query = urllib.parse.parse_qs(request.query).get("name", [""])[0]
            return named.group(1).decode() if named else query
        _, sep, name = request.path.partition(f"/b/{self.bucket}/o/")
        return name if sep else ""

    def is_list(self, request: Request) -> bool:
        if self.name.startswith("s3"):
            return request.method == "GET" and "list-type" in request.query
        return request.method == "GET" and request.path.endswith(f"/b/{self.bucket}/o")

    def on(self, fragment: str, method: str | None = None) -> Callable[[Request], bool]:
        """A predicate: requests about an object whose name contains ``fragment``."""

        def match(request: Request) -> bool:
            if method is not None and request.method != method:
                return False
            return fragment in self.object_name(request) and not self.is_list(request)

        return match

    def tally(self, **counts: int) -> None:
        TALLY.setdefault(self.name, Counter()).update(tests=1, **counts)


@functools.cache
def _aws_session() -> Any:
    """One botocore session for every client here: it loads the S3 model once
    (about half a second per client otherwise)."""
    from aiobotocore.session import get_session

    return get_session()


def _s3(name: str, server: S3Server) -> Backend:
    from aiobotocore.config import AioConfig

    from asyncflow.providers.s3 import StorageS3

    def make(endpoint: str, prefix: str, attempts: int) -> Storage:
        kwargs: dict[str, Any] = server.client_kwargs()
        kwargs["endpoint_url"] = endpoint
        kwargs["config"] = AioConfig(
            connect_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
            retries={"mode": "standard", "total_max_attempts": attempts},
        )
        return StorageS3(server.bucket, prefix, session=_aws_session(), **kwargs)

    return Backend(name, server.endpoint_url, server.bucket, server.secret_key, make, "PUT")


def _gcs(server: GCSServer) -> Backend:
    from asyncflow.providers.gcs import StorageGCS

    def make(endpoint: str, prefix: str, attempts: int) -> Storage:
        return StorageGCS(
            server.bucket, prefix, api_root=endpoint, timeout=TIMEOUT, retries=attempts - 1
        )

    return Backend("gcs", server.url, server.bucket, "", make, "POST")


def _backend(request: pytest.FixtureRequest, name: str) -> Backend:
    if name == "gcs":
        request.getfixturevalue("monkeypatch").delenv("STORAGE_EMULATOR_HOST", raising=False)
        return _gcs(request.getfixturevalue("fake_gcs_server"))
    server: S3Server = request.getfixturevalue(f"{name.removeprefix('s3-')}_server")
    if server.name == "moto":
        _reset_moto(server)
    return _s3(name, server)


@pytest.fixture(params=["s3-seaweedfs", "s3-moto", "gcs"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return _backend(request, request.param)


@pytest.fixture(params=["s3-seaweedfs", "gcs"])
def flow_backend(request: pytest.FixtureRequest) -> Backend:
    """Whole-flow tests: the closest S3 (SeaweedFS) and GCS servers."""
    return _backend(request, request.param)


@pytest.fixture
async def proxy(request: pytest.FixtureRequest) -> AsyncIterator[FaultProxy]:
    name = "flow_backend" if "flow_backend" in request.fixturenames else "backend"
    chosen: Backend = request.getfixturevalue(name)
    async with FaultProxy(chosen.upstream) as running:
        yield running


@pytest.fixture
def prefix() -> str:
    return f"faults-{secrets.token_hex(5)}"


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    for name, counts in sorted(TALLY.items()):
        print(
            f"\nfaults[{name}]: {counts['injected']} faults injected over {counts['tests']}"
            f" tests; {counts['recovered']} operations/runs recovered from transient faults"
            f" by retries; {counts['surfaced']} operations under persistent faults raised"
            f" StorageUnavailable naming bucket/key; {counts['resumes_refused']} resumes"
            f" with failing reads refused, 0 steps re-run; {counts['commits_failed']} failed"
            " checkpoint writes failed the run, that step alone re-run on resume"
        )


def _chain(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _assert_clean(exc: BaseException, backend: Backend, *names: str) -> None:
    """An asyncflow error naming the bucket and key(s); no SDK type, no secret."""
    assert isinstance(exc, StorageError)
    assert type(exc).__module__.partition(".")[0] == "asyncflow", type(exc)
    text = str(exc)
    assert backend.bucket in text, text
    for name in names:
        assert name in text, text
    if backend.secret:
        assert backend.secret not in _chain(exc)


# -- storage level: transient faults are retried ----------------------------------------


async def test_transient_errors_are_retried(
    flow_backend: Backend, proxy: FaultProxy, prefix: str
) -> None:
    """503s on a write, 500s on a read and on a listing: each retried to success."""
    backend = flow_backend
    faults = ATTEMPTS - 1
    async with backend.storage(prefix, proxy.url) as storage:
        proxy.fail(503, times=faults, match=backend.on("a.json", backend.write_method))
        version = await storage.write("wf/a.json", b"one")
        proxy.fail(500, times=faults, match=backend.on("a.json", "GET"))
        blob = await storage.read("wf/a.json")
        proxy.fail(503, times=faults, match=backend.is_list)
        listed = [key async for key in storage.list("wf/")]
    assert blob is not None
    assert (blob.data, blob.version) == (b"one", version)
    assert listed == ["wf/a.json"]
    # every fault reached the wire, then one more attempt got through
    assert proxy.count(action="status") == 3 * faults
    assert sum(1 for e in proxy.log if backend.on("a.json", "GET")(e.request)) == ATTEMPTS
    assert sum(1 for e in proxy.log if backend.is_list(e.request)) == ATTEMPTS
    gets = proxy.times(method="GET", path="a.json")
    waits = [b - a for a, b in itertools.pairwise(gets)]
    assert sum(waits) > 0.01, f"no backoff between attempts: {waits}"
    backend.tally(injected=proxy.injected, recovered=3)


async def test_dropped_connections_are_retried(
    backend: Backend, proxy: FaultProxy, prefix: str
) -> None:
    """Dropped before forwarding (never reached the server), and after (reply lost)."""
    async with backend.storage(prefix, proxy.url) as storage:
        proxy.reset(times=2, match=backend.on("a.json", backend.write_method))
        await storage.write("wf/a.json", b"one")
        proxy.drop_reply(times=1, match=backend.on("a.json", backend.write_method))
        version = await storage.write("wf/a.json", b"two")  # landed, answer lost, re-sent
        proxy.reset(times=1, match=backend.on("a.json", "GET"))
        proxy.drop_reply(times=1, match=backend.on("a.json", "GET"))
        blob = await storage.read("wf/a.json")
        proxy.reset(times=1, match=backend.is_list)
        listed = [key async for key in storage.list("wf/")]
        proxy.drop_reply(times=1, match=backend.on("a.json", "DELETE"))
        await storage.delete("wf/a.json")
        gone = await storage.read("wf/a.json")
    assert blob is not None
    assert (blob.data, blob.version) == (b"two", version)
    assert listed == ["wf/a.json"]
    assert gone is None
    assert proxy.count(action="reset") == 4
    assert proxy.count(action="drop_reply") == 3
    backend.tally(injected=proxy.injected, recovered=6)


async def test_a_delay_below_the_timeout_just_waits(
    backend: Backend, proxy: FaultProxy, prefix: str
) -> None:
    async with backend.storage(prefix, proxy.url) as storage:
        await storage.write("wf/a.json", b"one")
        proxy.delay(TIMEOUT / 3, times=1, match=backend.on("a.json", "GET"))
        clock = time.monotonic()
        blob = await storage.read("wf/a.json")
        took = time.monotonic() - clock
    assert blob is not None
    assert blob.data == b"one"
    assert took >= TIMEOUT / 3
    assert proxy.count(method="GET", path="a.json") == 1, "a slow answer was retried"
    backend.tally(injected=proxy.injected, recovered=1)


async def test_a_delay_past_the_timeout_is_retried(
    backend: Backend, proxy: FaultProxy, prefix: str
) -> None:
    async with backend.storage(prefix, proxy.url) as storage:
        await storage.write("wf/a.json", b"one")
        proxy.delay(TIMEOUT * 3, times=1, match=backend.on("a.json", "GET"))
        clock = time.monotonic()
        blob = await storage.read("wf/a.json")
        took = time.monotonic() - clock
    assert blob is not None
    assert blob.data == b"one"
    assert proxy.count(method="GET", path="a.json") == 2
    assert took < TIMEOUT * 3, f"the client waited out the stall ({took:.2f}s)"
    backend.tally(injected=proxy.injected, recovered=1)


async def test_a_reply_cut_short_is_retried_and_never_returned(
    backend: Backend, proxy: FaultProxy, prefix: str
) -> None:
    """A torn answer (the head says 2000 bytes, 100 arrive) is retried as a new
    GET; if every answer is torn the read raises. Torn bytes are never returned,
    and a torn answer never reads as a missing record."""
    data = secrets.token_bytes(2000)
    async with backend.storage(prefix, proxy.url) as storage:
        await storage.write("wf/a.bin", data)
        proxy.truncate(100, times=1, match=backend.on("a.bin", "GET"))
        blob = await storage.read("wf/a.bin")
        assert blob is not None
        assert blob.data == data
        assert sum(1 for e in proxy.log if backend.on("a.bin", "GET")(e.request)) == 2
        proxy.truncate(100, times=None, match=backend.on("a.bin", "GET"))
        with pytest.raises(StorageUnavailable) as caught:
            await storage.read("wf/a.bin")
        _assert_clean(caught.value, backend, f"{prefix}/wf/a.bin")
    assert proxy.count(action="truncate") >= 3
    backend.tally(injected=proxy.injected, recovered=1, surfaced=1)


# -- storage level: persistent faults surface, cleanly ---------------------------------


async def test_persistent_faults_surface_as_storage_unavailable(
    flow_backend: Backend, proxy: FaultProxy, prefix: str
) -> None:
    backend = flow_backend
    async with backend.storage(prefix, backend.upstream) as direct:
        await direct.write("wf/a.json", b"one")
    surfaced = 0
    async with backend.storage(prefix, proxy.url, FEW) as storage:
        proxy.fail(503, times=None, match=backend.on("a.json"))
        proxy.fail(500, times=None, match=backend.is_list)
        calls: list[tuple[str, Any]] = [
            ("read", storage.read("wf/a.json")),
            ("write", storage.write("wf/a.json", b"two", if_absent=True)),
            ("delete", storage.delete("wf/a.json")),
            ("list", _drain(storage.list("wf/"))),
        ]
        for op, call in calls:
            before = len(proxy.log)
            with pytest.raises(StorageUnavailable) as caught:
                await call
            _assert_clean(caught.value, backend, f"{prefix}/wf/", op)
            assert len(proxy.log) - before == FEW, f"{op}: not tried {FEW} times"
            surfaced += 1
        proxy.clear()
        proxy.reset(times=None)
        with pytest.raises(StorageUnavailable) as caught:
            await storage.read("wf/a.json")
        _assert_clean(caught.value, backend, f"{prefix}/wf/a.json")
        assert "cannot reach the server" in str(caught.value)
        surfaced += 1
    async with backend.storage(prefix, backend.upstream) as direct:
        blob = await direct.read("wf/a.json")
    assert blob is not None
    assert blob.data == b"one", "a refused write or delete changed the record"
    backend.tally(injected=proxy.injected, surfaced=surfaced)


async def test_a_failing_bucket_check_is_not_a_missing_record(
    flow_backend: Backend, proxy: FaultProxy, prefix: str
) -> None:
    """GCS checks the bucket on the first 404; if that check fails, the read fails."""
    backend = flow_backend
    if not backend.name.startswith("gcs"):
        pytest.skip("S3 reads NoSuchKey as a missing object without a bucket check")
    async with backend.storage(prefix, proxy.url) as storage:
        proxy.fail(503, times=None, match=lambda r: r.path.endswith(f"/b/{backend.bucket}"))
        with pytest.raises(StorageUnavailable) as caught:
            await storage.read("wf/missing.json")
        _assert_clean(caught.value, backend, "wf/missing.json")
    backend.tally(injected=proxy.injected, surfaced=1)


# -- flow level -------------------------------------------------------------------------


STEPS = 4


def _flow(storage: Storage, calls: list[int], workflow_id: str = "wf") -> AsyncFlow:
    flow = AsyncFlow(config=Config(storage=storage), workflow_id=workflow_id)

    def make(key: int) -> Any:
        async def step(previous_context: Context, initial_context: Context) -> dict[str, int]:
            calls.append(key)
            previous = previous_context.storage or {"sum": 0}
            return {"key": key, "sum": previous["sum"] + initial_context.storage}

        step.__qualname__ = str(key)  # the default key derives from it: "0", "1", ...
        return action(step)

    for key in range(STEPS):
        flow.task.add(step=make(key), initial_context=key + 1)
    return flow


async def _records(backend: Backend, prefix: str) -> dict[str, Any]:
    """Every committed record, read directly and decoded (a torn one raises)."""
    found: dict[str, Any] = {}
    async with backend.storage(prefix) as direct:
        async for name in direct.list("wf/tasks/"):
            key = name.rsplit("/", 1)[1].removesuffix(".json")
            blob = await direct.read(name)
            assert blob is not None
            record = decode_record(
                blob.data,
                where=name,
                workflow_id="wf",
                key=key,
                serializers={"json": JSONSerializer()},
            )
            found[key] = record.output
    return found


def _expected(upto: int) -> dict[str, Any]:
    total = 0
    out = {}
    for key in range(upto):
        total += key + 1
        out[str(key)] = {"key": key, "sum": total}
    return out


@pytest.mark.parametrize("fault", ["record-reads-503", "all-gets-reset", "listing-500"])
async def test_a_resume_whose_reads_fail_runs_nothing(
    flow_backend: Backend, proxy: FaultProxy, prefix: str, fault: str
) -> None:
    backend = flow_backend
    calls: list[int] = []
    async with backend.storage(prefix) as direct:
        await _flow(direct, calls).start(resume=True)
    assert calls == list(range(STEPS))
    calls.clear()
    if fault == "record-reads-503":
        proxy.fail(503, times=None, match=backend.on("wf/tasks/", "GET"))
    elif fault == "all-gets-reset":
        proxy.reset(times=None, method="GET")
    else:
        proxy.fail(500, times=None, match=backend.is_list)
    async with backend.storage(prefix, proxy.url, FEW) as storage:
        flow = _flow(storage, calls)
        with pytest.raises(StorageError) as caught:
            await flow.start(resume=True)
    _assert_clean(caught.value, backend, f"{prefix}/wf/")
    assert calls == [], "a failed read was taken for a missing checkpoint"
    assert proxy.injected >= FEW
    assert await _records(backend, prefix) == _expected(STEPS)
    # and once the store answers again, the resume restores everything
    async with backend.storage(prefix) as direct:
        flow = _flow(direct, calls)
        await flow.start(resume=True)
    assert calls == []
    assert flow.result_storage()[-1] == _expected(STEPS)[str(STEPS - 1)]
    backend.tally(injected=proxy.injected, resumes_refused=1)


@pytest.mark.parametrize("fault", ["503", "reset"])
async def test_a_failed_checkpoint_write_fails_the_run(
    flow_backend: Backend, proxy: FaultProxy, prefix: str, fault: str
) -> None:
    backend = flow_backend
    calls: list[int] = []
    failing = backend.on("wf/tasks/2.json", backend.write_method)
    if fault == "503":
        proxy.fail(503, times=None, match=failing)
    else:
        proxy.reset(times=None, match=failing)
    async with backend.storage(prefix, proxy.url, FEW) as storage:
        flow = _flow(storage, calls)
        with pytest.raises(StorageUnavailable) as caught:
            await flow.start(resume=True)
    _assert_clean(caught.value, backend, f"{prefix}/wf/tasks/2.json", "write")
    assert calls == [0, 1, 2]
    statuses = [task.status for task in flow.result_task()]
    assert statuses == [
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.NOT_STARTED,
    ]
    assert flow.result_task()[2].error is caught.value
    assert flow.status == "failed"
    # aiohttp itself re-sends an idempotent request (S3's PUT, not GCS's POST) once
    # when its connection drops, under each of the SDK's attempts
    resent = 2 if fault == "reset" and backend.write_method == "PUT" else 1
    assert sum(1 for e in proxy.log if failing(e.request)) == FEW * resent
    assert await _records(backend, prefix) == _expected(2), "a record is torn or extra"
    # the next resume, through a healthy path: step 2 re-runs, 0 and 1 are restored
    calls.clear()
    async with backend.storage(prefix) as direct:
        flow = _flow(direct, calls)
        await flow.start(resume=True)
    assert calls == [2, 3]
    assert [task.restored for task in flow.result_task()] == [True, True, False, False]
    assert await _records(backend, prefix) == _expected(STEPS)
    backend.tally(injected=proxy.injected, commits_failed=1)


async def test_a_run_through_transient_faults_everywhere_completes_once(
    flow_backend: Backend, proxy: FaultProxy, prefix: str
) -> None:
    """Faults sprinkled over every kind of request, never more in a row than the
    retries absorb: every 4th request answers 503, every third checkpoint write
    loses its answer, a read and a listing lose their connection, some requests
    stall. The run completes, every step ran exactly once, every record is whole.

    At most two faults fall on one operation's three attempts whatever else
    the run requests in between (a dropped answer, then at most one 503 before
    the next write that is not dropped)."""
    backend = flow_backend
    calls: list[int] = []
    proxy.drop_reply(times=2, every=3, match=backend.on("wf/tasks/", backend.write_method))
    proxy.reset(times=1, match=backend.on("wf/", "GET"))
    proxy.reset(times=1, match=backend.is_list)
    proxy.delay(TIMEOUT / 4, times=2, every=5)
    proxy.fail(503, times=12, every=4)
    async with backend.storage(prefix, proxy.url) as storage:
        flow = _flow(storage, calls)
        await flow.start(resume=True)
    assert flow.status == "completed"
    assert calls == list(range(STEPS)), "a step ran twice (or not at all)"
    assert await _records(backend, prefix) == _expected(STEPS)
    assert proxy.injected >= 8, proxy.injected
    backend.tally(injected=proxy.injected, recovered=proxy.injected)


async def _drain(iterator: AsyncIterator[str]) -> list[str]:
    return [item async for item in iterator]


async def test_a_sub_second_gcs_timeout_is_honoured(
    fake_gcs_server: GCSServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncflow.providers.gcs import StorageGCS

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    async with FaultProxy(fake_gcs_server.url) as proxy:
        storage = StorageGCS(
            fake_gcs_server.bucket, prefix, api_root=proxy.url, timeout=0.5, retries=0
        )
        async with storage:
            await storage.write("a.json", b"1")
            proxy.delay(2.0, method="GET")
            with anyio.fail_after(1.5), pytest.raises(StorageUnavailable):
                await storage.read("a.json")
