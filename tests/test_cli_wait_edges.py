"""Waits, signals and live status across processes: the ``asyncflow`` CLI against runs in others.

Each test runs on file storage and on SeaweedFS (a real S3 server on
127.0.0.1): the flows are ``tests/_core/flows/edges.py`` in child
interpreters, the commands are ``python -m asyncflow``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._core.test_cross_process import Place
from tests._core.test_waits_cross_process import cli, make_place

FLOW = Path(__file__).parent / "_core" / "flows" / "edges.py"


@pytest.fixture(params=["file", "s3-seaweedfs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place(request.param, request, tmp_path)


def run(place: Place, wid: str, what: str, mode: str = "park") -> str:
    done = subprocess.run(
        [sys.executable, str(FLOW), place.url, wid, what, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=place.env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def spawn(place: Place, wid: str, what: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(FLOW), place.url, wid, what, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=place.env,
    )


def status(place: Place, wid: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(place, "status", wid, "--storage", place.url, *extra)


def test_signal_refuses_no_workflow_and_a_completed_run_and_keeps_before_start(
    place: Place,
) -> None:
    assert "status waiting" in run(place, "order-1", "signal:go")
    typo = cli(place, "signal", "ordr-1", "go", "--storage", place.url)
    assert typo.returncode == 2
    assert "no workflow ordr-1 (did you mean 'order-1'?)" in typo.stderr
    assert "--before-start" in typo.stderr

    early = cli(place, "signal", "fresh-1", "go", "--data", "5", "--before-start",
                "--storage", place.url)  # fmt: skip
    assert early.returncode == 0, early.stderr
    assert "kept for its first start" in early.stdout
    assert "status completed output 5" in run(place, "fresh-1", "signal:go", "fresh")

    late = cli(place, "signal", "fresh-1", "again", "--storage", place.url)
    assert late.returncode == 2
    assert "fresh-1 has completed" in late.stderr

    big = cli(place, "signal", "order-1", "go", "--data", json.dumps("x" * 500),
              "--max-bytes", "100", "--storage", place.url)  # fmt: skip
    assert big.returncode == 1
    assert "over the limit of 100" in big.stderr


def test_a_signal_after_the_deadline_times_the_parked_wait_out(place: Place) -> None:
    assert "waiting" in run(place, "slow-1", "signal:go:1")
    time.sleep(1.5)  # nobody resumed it in time
    sent = cli(place, "signal", "slow-1", "go", "--data", "true", "--storage", place.url)
    assert sent.returncode == 0, sent.stderr
    out = run(place, "slow-1", "signal:go:1")
    assert "status failed" in out
    assert "error TaskTimeout" in out


def test_status_says_a_signal_arrived_and_reset_asks_again(place: Place) -> None:
    run(place, "appr-1", "signal:approve")
    waiting = status(place, "appr-1")
    assert waiting.returncode == 0, waiting.stderr
    assert "for signal 'approve'" in waiting.stdout
    assert cli(place, "signal", "appr-1", "approve", "--data", '"yes"',
               "--storage", place.url).returncode == 0  # fmt: skip
    arrived = status(place, "appr-1")
    assert arrived.returncode == 0, arrived.stderr
    assert "signal approve received at " in arrived.stdout
    assert "the next resume consumes it" in arrived.stdout
    assert 'status completed output "yes"' in run(place, "appr-1", "signal:approve")

    reset = cli(place, "reset", "appr-1", "--from", "wait", "--storage", place.url)
    assert reset.returncode == 0, reset.stderr
    assert "status waiting" in run(place, "appr-1", "signal:approve")  # it asks again
    assert cli(place, "signal", "appr-1", "approve", "--data", '"again"',
               "--storage", place.url).returncode == 0  # fmt: skip
    assert 'status completed output "again"' in run(place, "appr-1", "signal:approve")


def test_a_blocking_sleep_and_its_kill_9_show_the_wake_time(place: Place) -> None:
    child = spawn(place, "nap-1", "sleep:3600", "block")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "waiting"
        deadline = time.monotonic() + 30
        while True:  # the live run.json names the running task within a second or so
            live = status(place, "nap-1")
            assert live.returncode == 0, live.stderr
            if "running now: wait" in live.stdout:
                break
            assert time.monotonic() < deadline, live.stdout
            time.sleep(0.2)
        row = next(line for line in live.stdout.splitlines() if " wait.sleep " in line)
        assert "running" in row
        assert "not run" not in row
        assert "waiting: key wait for its wake time 20" in live.stdout
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    crashed = status(place, "nap-1")
    assert crashed.returncode == 0, crashed.stderr
    assert "nap-1: crashed" in crashed.stdout
    row = next(line for line in crashed.stdout.splitlines() if " wait.sleep " in line)
    assert "waiting" in row
    assert "waiting: key wait for its wake time 20" in crashed.stdout
    body = json.loads(status(place, "nap-1", "--format", "json").stdout)
    (armed,) = body["waits"]
    assert armed["key"] == "wait"
    assert armed["armed"]
    assert armed["due_at"] > time.time() + 3000


def test_an_impossible_wake_time_read_back_is_shown_invalid(place: Place) -> None:
    run(place, "far-1", "sleep:60")
    run(place, "far-1", "tamper")
    shown = status(place, "far-1")
    assert shown.returncode == 0, shown.stderr
    assert "invalid wake time 1e+300" in shown.stdout
    assert "invalid due time 1e+300" in shown.stdout or "due: when" in shown.stdout
    listed = cli(place, "list", "--storage", place.url)
    assert listed.returncode == 0, listed.stderr
    assert "far-1" in listed.stdout


def test_a_live_map_shows_its_childrens_progress(place: Place) -> None:
    child = spawn(place, "conv-1", "map:20:0.5", "block")
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while child.poll() is None:
            live = status(place, "conv-1")
            if "no workflow conv-1" in live.stderr:  # not started yet
                time.sleep(0.1)
                continue
            assert live.returncode == 0, live.stderr
            row = next((ln for ln in live.stdout.splitlines() if " convert " in ln), "")
            if "running (" in row and "/20 children)" in row and "(20/20" not in row:
                seen = row
                break
            assert time.monotonic() < deadline, live.stdout
            time.sleep(0.2)
        assert "running" in seen, seen
        assert "/20 children)" in seen, seen
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert "status completed" in out
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_the_cli_and_the_api_infer_the_same_mode(tmp_path: Path) -> None:
    place = Place(f"file://{tmp_path / 'store'}", dict(os.environ))
    out = run(place, "conv-2", "map:3:0", "fresh")  # start() names no mode
    assert "status completed" in out
    body = json.loads(status(place, "conv-2", "--format", "json").stdout)
    assert body["mode"] == "graph"
