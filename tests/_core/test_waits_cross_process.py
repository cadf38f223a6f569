"""Durable waits across interpreters: parked in one process, finished in another.

The call log (one line per real execution of a step) proves what ran where.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests._core.test_cross_process import Place
from tests.servers import GCSServer, S3Server

FLOW = Path(__file__).parent / "flows" / "waity.py"
T0 = 1_900_000_000.0  # the children's manual clock starts here (2030)


def make_place(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """A persistent storage of ``kind`` that child processes can reach."""
    env = dict(os.environ)
    prefix = f"w-{secrets.token_hex(6)}"
    if kind == "file":
        return Place(f"file://{tmp_path / 'store'}", env)
    if kind == "s3-seaweedfs":
        s3: S3Server = request.getfixturevalue("seaweedfs_server")
        env.update(
            AWS_ENDPOINT_URL=s3.endpoint_url,
            AWS_ACCESS_KEY_ID=s3.access_key,
            AWS_SECRET_ACCESS_KEY=s3.secret_key,
            AWS_DEFAULT_REGION=s3.region,
        )
        return Place(f"s3://{s3.bucket}/{prefix}", env)
    gcs: GCSServer = request.getfixturevalue("fake_gcs_server")
    env["STORAGE_EMULATOR_HOST"] = gcs.url
    return Place(f"gs://{gcs.bucket}/{prefix}", env)


@pytest.fixture(params=["file", "s3-seaweedfs", "gcs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place(request.param, request, tmp_path)


def child(
    place: Place, log: Path, now: float, wid: str, what: str, on_wait: str = "park"
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(FLOW), place.url, str(log), str(now), wid, what, on_wait],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=place.env,
    )
    assert done.returncode == 0, done.stderr
    return done


def cli(
    place: Place, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env if env is not None else place.env,
    )


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_signal_parks_a_run_and_a_later_process_finishes_it(tmp_path: Path, place: Place) -> None:
    log = tmp_path / "calls.log"
    first = child(place, log, T0, "order-1", "signal:approval")
    assert "status waiting due_at None" in first.stdout
    assert calls(log) == ["before order-1 -"]
    sent = cli(
        place, "signal", "order-1", "approval", "--data", '{"by": "alice"}', "--storage", place.url
    )
    assert sent.returncode == 0, sent.stderr
    again = cli(place, "signal", "order-1", "approval", "--storage", place.url)
    assert again.returncode == 1
    assert "already sent" in again.stderr
    last = child(place, log, T0 + 5, "order-1", "signal:approval")
    assert "status completed" in last.stdout
    assert calls(log) == ["before order-1 -", 'after order-1 {"by": "alice"}']


def test_a_sleeps_wake_time_survives_two_restarts(tmp_path: Path) -> None:
    place = Place(f"file://{tmp_path / 'store'}", dict(os.environ))
    log = tmp_path / "calls.log"
    wake = T0 + 3600
    for now in (T0, T0 + 100, T0 + 3599):
        run = child(place, log, now, "nap", "sleep:3600")
        assert f"status waiting due_at {wake}" in run.stdout  # never re-armed from a later now
    done = child(place, log, T0 + 3600, "nap", "sleep:3600")
    assert "status completed" in done.stdout
    iso = dt.datetime.fromtimestamp(wake, dt.timezone.utc).isoformat()
    assert calls(log) == ["before nap -", f"after nap {iso}"]


def test_a_signal_sent_while_a_run_blocks_is_seen_promptly(tmp_path: Path) -> None:
    place = Place(f"file://{tmp_path / 'store'}", dict(os.environ))
    log = tmp_path / "calls.log"
    blocked = subprocess.Popen(
        [sys.executable, str(FLOW), place.url, str(log), str(T0), "live", "signal:go", "block"],
        stdout=subprocess.PIPE,
        text=True,
        env=place.env,
    )
    try:
        assert blocked.stdout is not None
        assert blocked.stdout.readline().strip() == "waiting"
        sent = cli(place, "signal", "live", "go", "--data", "7", "--storage", place.url)
        assert sent.returncode == 0, sent.stderr
        started = time.monotonic()
        assert blocked.wait(timeout=30) == 0
        # the child polls every 0.1s: interpreter exit dominates, not the poll
        assert time.monotonic() - started < 10
        assert "status completed" in blocked.stdout.read()
    finally:
        blocked.kill()
        blocked.wait()
        if blocked.stdout is not None:
            blocked.stdout.close()
    assert calls(log) == ["before live -", "after live 7"]


@pytest.mark.parametrize("kind", ["file", "s3-seaweedfs"])
def test_two_workers_run_only_due_runs_and_never_one_twice(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    place = make_place(kind, request, tmp_path)
    log = tmp_path / "calls.log"
    due = [f"job-{n}" for n in range(6)]
    quiet = ["job-quiet-1", "job-quiet-2"]
    for wid in due + quiet:
        child(place, log, T0, wid, "signal:go")
    child(place, log, 1_600_000_000, "job-nap-due", "sleep:60")  # woke in 2020
    child(place, log, T0, "job-nap-later", "sleep:60")  # wakes in 2030
    for wid in due:
        assert (
            cli(
                place, "signal", wid, "go", "--data", json.dumps(wid), "--storage", place.url
            ).returncode
            == 0
        )
    env = dict(place.env, WAITY_URL=place.url, WAITY_LOG=str(log), WAITY_WAIT="signal:go")
    command = [sys.executable, "-m", "asyncflow", "worker", f"{FLOW}:make", "--once",
               "--concurrency", "3", "--storage", place.url]  # fmt: skip
    workers = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=120) for w in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    due.append("job-nap-due")
    after = Counter(line.split()[1] for line in calls(log) if line.startswith("after"))
    assert after == Counter(due)  # each due run resumed exactly once, nothing else
    resumed = " ".join(out for out, _ in outputs)
    assert sorted(w for w in resumed.split() if w.startswith("job-")) == sorted(due)
    status = cli(place, "status", "job-quiet-1", "--format", "json", "--storage", place.url)
    assert json.loads(status.stdout)["status"] == "waiting"


def test_worker_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    place = Place(f"file://{tmp_path / 'store'}", dict(os.environ))
    log = tmp_path / "calls.log"
    child(place, log, T0, "slow", "signal:go")
    env = dict(place.env, WAITY_URL=place.url, WAITY_LOG=str(log), WAITY_WAIT="signal:go")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncflow",
            "worker",
            f"{FLOW}:make",
            "--poll",
            "0.1",
            "--storage",
            place.url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert cli(place, "signal", "slow", "go", "--storage", place.url).returncode == 0
        deadline = time.monotonic() + 60
        while not any(line.startswith("after slow") for line in calls(log)):
            assert time.monotonic() < deadline, "the worker never resumed the run"
            assert worker.poll() is None
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "resumed 1 run(s): slow" in out
    assert "SIGTERM" in err
