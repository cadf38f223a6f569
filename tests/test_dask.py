"""Steps on a Dask cluster (DaskExecutor), and many runners sharing one object store.

The cluster is a real ``LocalCluster`` of two worker *processes*, started once
per session. The scheduler runs in this process with ``allowed-failures: 0``,
so a task whose worker is killed fails at once with ``KilledWorker`` instead
of being rescheduled: the resume test then knows exactly which tasks the
first run left unfinished.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncflow import (
    AsyncFlow,
    Config,
    TaskFailed,
    TaskStatus,
    TaskTimeout,
    WorkflowLocked,
    action,
)
from asyncflow._kernel.lease import Lease, LeaseRecord, lease_key
from asyncflow.providers import StorageDefault, StorageFile, storage_from_url
from tests import scale_flow
from tests.servers import S3Server

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

from asyncflow.executors import DaskExecutor  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=4,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            # no dashboard, but the scheduler's HTTP server (health, metrics) would
            # still ask for port 8787, and collide with any other cluster here
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def scheduler(anyio_backend: Any, request: pytest.FixtureRequest) -> str:
    name = anyio_backend[0] if isinstance(anyio_backend, tuple) else anyio_backend
    if name != "asyncio":
        pytest.skip("dask.distributed runs on asyncio only")
    address: str = request.getfixturevalue("dask_cluster").scheduler_address
    return address


def ran(log: Path) -> list[int]:
    return sorted(int(line) for line in log.read_text().split()) if log.exists() else []


async def test_the_same_flow_file_runs_in_process_and_on_the_cluster(
    scheduler: str, tmp_path: Path
) -> None:
    local = scale_flow.build_etl(Config(storage=StorageFile(tmp_path / "a")), "etl")
    await local.start(resume=True)
    async with DaskExecutor(scheduler) as executor:
        config = Config(storage=StorageFile(tmp_path / "b"), executor=executor)
        remote = scale_flow.build_etl(config, "etl")
        await remote.start(resume=True)
        assert remote.status == local.status == "completed"

        def outputs(flow: AsyncFlow) -> list[Any]:
            return [t.current_context.storage for t in flow.result_task()]

        def scrub(values: list[Any]) -> list[Any]:
            return [{k: v for k, v in x.items() if k != "pid"} if isinstance(x, dict) else x
                    for x in values]  # fmt: skip

        assert scrub(outputs(remote)) == scrub(outputs(local))
        assert outputs(local)[2] == [30, "5 rows, total 30"]
        # the steps really ran in the worker processes, not here
        worker_pids = set((await executor._client.run(os.getpid)).values())  # type: ignore[union-attr]
        assert {outputs(remote)[0]["pid"], outputs(remote)[1]["pid"]} <= worker_pids
        assert os.getpid() not in worker_pids

        # resume on the cluster restores from the checkpoints, runs nothing
        again = scale_flow.build_etl(config, "etl")
        await again.start(resume=True)
        assert [t.restored for t in again.result_task()] == [True, True, True]


async def test_200_parallel_tasks_resume_after_a_worker_is_killed(
    scheduler: str, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    storage = StorageFile(tmp_path / "store")
    async with DaskExecutor(scheduler) as executor:
        client = await executor.client()
        await client.wait_for_workers(2)
        config = Config(storage=storage, executor=executor)
        first = scale_flow.build_fan_out(config, "fan", 200, str(log), 0.05)

        async def kill_a_worker() -> None:
            while len(ran(log)) < 40:
                await anyio.sleep(0.01)
            pids = await client.run(os.getpid)
            os.kill(sorted(pids.values())[0], signal.SIGKILL)

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_a_worker)
            await first.start(mode="parallel", keep_going=True, resume=True)
        done = {t.task_id for t in first.result_task() if t.status is TaskStatus.COMPLETED}
        failed = [t for t in first.result_task() if t.status is TaskStatus.FAILED]
        assert failed, "killing a worker mid-run should fail the tasks running on it"
        assert all(type(t.error).__name__ == "KilledWorker" for t in failed)
        assert len(done) + len(failed) == 200
        assert set(ran(log)) >= done

        log.unlink()
        await client.wait_for_workers(2)  # the nanny restarted the killed worker
        second = scale_flow.build_fan_out(config, "fan", 200, str(log), 0.0)
        await second.start(mode="parallel", keep_going=True, resume=True)
        assert all(t.status is TaskStatus.COMPLETED for t in second.result_task())
        # exactly the unfinished tasks ran again; every finished one was restored
        assert set(ran(log)) == set(range(200)) - done
        assert {t.task_id for t in second.result_task() if t.restored} == done
        assert [t.current_context.storage["square"] for t in second.result_task()] == [
            i * i for i in range(200)
        ]


@action(timeout=0.5)
async def sleeps_too_long(initial_context: Any) -> str:
    marker = Path(initial_context.storage)
    marker.write_text("started")
    try:
        await anyio.sleep(30)
    except BaseException:
        marker.write_text("cancelled on the worker")
        raise
    return "never"


async def test_a_timeout_cancels_the_remote_future(scheduler: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with DaskExecutor(scheduler) as executor:
        flow = AsyncFlow(config=Config(executor=executor), workflow_id="slow")
        flow.task.add(step=sleeps_too_long, initial_context=str(marker))
        clock = time.monotonic()
        await flow.start()
        assert time.monotonic() - clock < 3
        (task,) = flow.result_task()
        assert task.status is TaskStatus.FAILED
        assert isinstance(task.error, TaskTimeout)
        with anyio.fail_after(5):
            while marker.read_text() != "cancelled on the worker":
                await anyio.sleep(0.02)
        client = await executor.client()
        keys = await client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))
        assert not [k for k in keys if "sleeps_too_long" in str(k)]


async def test_a_step_that_cannot_be_shipped_fails_naming_it(scheduler: str) -> None:
    lock = threading.Lock()

    @action
    def holds_a_lock() -> bool:
        return lock.locked()

    async with DaskExecutor(scheduler) as executor:
        flow = AsyncFlow(config=Config(storage=StorageDefault(), executor=executor))
        flow.task.add(step=holds_a_lock)
        await flow.start()
        (task,) = flow.result_task()
        assert task.status is TaskStatus.FAILED
        assert isinstance(task.error, TaskFailed)
        assert "holds_a_lock" in str(task.error)
        assert "cannot be shipped" in str(task.error)


@action
async def remote_items() -> list[int]:
    return [1, 2, 3, 4]


@action
def remote_square(initial_context: Any) -> tuple[int, int]:
    return initial_context.storage**2, os.getpid()


@action
async def remote_total(previous_context: Any) -> int:
    return sum(square for square, _ in previous_context.storage)


async def test_a_graph_with_a_map_runs_its_children_on_the_cluster(scheduler: str) -> None:
    async with DaskExecutor(scheduler) as executor:
        flow = AsyncFlow(config=Config(storage=StorageDefault(), executor=executor))
        flow.task.add(step=remote_items)
        flow.task.map(remote_square, over="remote_items", key="squares")
        flow.task.add(step=remote_total, depends_on="squares")
        await flow.start(mode="graph")
        assert flow.status == "completed"
        _, squares, total = flow.result_storage()
        assert total == 30
        assert {pid for _, pid in squares} - {os.getpid()}  # ran on worker processes


@action
def remote_pid() -> int:
    return os.getpid()


async def test_a_child_flow_runs_here_and_its_steps_on_the_cluster(scheduler: str) -> None:
    async with DaskExecutor(scheduler) as executor:
        child = AsyncFlow()
        child.task.add(step=remote_pid)
        flow = AsyncFlow(config=Config(storage=StorageDefault(), executor=executor))
        flow.task.add(step=child, key="sub")
        await flow.start()
        assert flow.status == "completed", flow.result_task()[0].error
        assert flow.result_storage()[0] != os.getpid()


# -- many runners, one store ----------------------------------------------------

TTL = scale_flow.RACE_LEASE_TTL


def race(env: dict[str, str], url: str, log: Path, role: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, scale_flow.__file__, "race", url, "shared-wf", str(log), role],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_many_runners_one_bucket_one_wins_and_a_dead_one_is_taken_over_after_expiry(
    seaweedfs_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = seaweedfs_server
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=s3.endpoint_url,
        AWS_ACCESS_KEY_ID=s3.access_key,
        AWS_SECRET_ACCESS_KEY=s3.secret_key,
        AWS_DEFAULT_REGION=s3.region,
        PYTHONPATH=str(Path(__file__).parent.parent),
    )
    url = f"s3://{s3.bucket}/many-{secrets.token_hex(4)}"
    log = tmp_path / "steps.log"

    holder = race(env, url, log, "remote")  # runs as if on another machine
    deadline = time.monotonic() + 30
    while not (log.exists() and len(log.read_text().splitlines()) >= 2):
        assert holder.poll() is None, holder.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)

    refused = race(env, url, log, "eager")
    out, err = refused.communicate(timeout=30)
    assert refused.returncode == 3, err
    assert "locked: workflow shared-wf is being run by runner" in out
    assert "runner-on-another-host" in out

    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=10)  # reaps it and closes its pipes
    finished_by_holder = {int(line.split()[0]) for line in log.read_text().splitlines()}

    # the dead runner's lease is still live: a runner that does not wait is refused,
    # since it cannot prove a process on another host dead ...
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("AWS_DEFAULT_REGION", env["AWS_DEFAULT_REGION"])

    async def refused_then_read() -> LeaseRecord:
        async with storage_from_url(url) as storage:
            with pytest.raises(WorkflowLocked, match="runner-on-another-host"):
                await Lease(storage, "shared-wf", ttl=TTL, renew_every=1).acquire()
            blob = await storage.read(lease_key("shared-wf"))
            assert blob is not None
            return LeaseRecord.decode(blob.data, "lease")

    dead = anyio.run(refused_then_read)
    assert dead.host == "runner-on-another-host"
    assert not dead.released
    assert dead.expires_at > time.time()
    # ... and one that waits takes over once the lease expires, then resumes
    waiter = race(env, url, log, "waiter")
    out, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    assert "status completed" in out
    lines = [line.split() for line in log.read_text().splitlines()]
    resumed = [(int(i), float(at)) for i, pid, at in lines if int(pid) == waiter.pid]
    assert resumed, out
    assert min(at for _, at in resumed) >= dead.expires_at  # not before the expiry
    restored = set(json.loads(out.split("restored ")[1].strip()))
    reran = {i for i, _ in resumed}
    # A's committed checkpoints are restored, everything else runs again (a step A
    # logged but was killed before committing is the only one that runs twice)
    assert restored
    assert restored <= finished_by_holder
    assert reran == set(range(8)) - restored
    assert len(finished_by_holder - restored) <= 1
