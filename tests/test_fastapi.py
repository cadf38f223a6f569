"""examples/fastapi_app.py under a real uvicorn, called with httpx, killed and restarted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
STEPS = ["extract", "clean", "enrich", "aggregate", "publish"]
STEP_SECONDS = 0.4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``uvicorn fastapi_app:app`` in its own process (its pid is the flow's runner)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES)),
                *("--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=5)

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        response.raise_for_status()
        return response.json()

    def wait_until(self, check: Callable[[dict[str, Any]], bool], timeout: float = 15) -> Any:
        """Poll GET /status (the server may still be starting) until ``check`` holds."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"uvicorn exited with {self.proc.returncode}"
            try:
                last = self.get("/status")
            except httpx.TransportError:
                last = None
            if last is not None and check(last):
                return last
            time.sleep(0.05)
        raise AssertionError(f"timed out; last /status: {last}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, the lease stays behind. Reap it, so /proc forgets it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[[], Server]]:
    env = {
        **os.environ,
        "ASYNCFLOW_PATH": str(tmp_path / "checkpoints"),
        "ASYNCFLOW_STEP_SECONDS": str(STEP_SECONDS),
        "ASYNCFLOW_CALL_LOG": str(tmp_path / "calls.log"),
    }
    started: list[Server] = []

    def start() -> Server:
        server = Server(env, tmp_path / "uvicorn.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def calls(tmp_path: Path) -> list[tuple[int, str]]:
    text = (tmp_path / "calls.log").read_text()
    return [(int(pid), step) for pid, step in (line.split() for line in text.splitlines())]


def completed(status: dict[str, Any]) -> list[str]:
    return [t["step"] for t in status["tasks"] if t["status"] == "completed"]


def test_killed_server_resumes_the_flow_without_rerunning_completed_steps(
    servers: Callable[[], Server], tmp_path: Path
) -> None:
    first = servers()
    # The server answers while the flow runs in the background on its loop.
    before = first.wait_until(lambda s: len(completed(s)) >= 2)
    assert before["status"] == "running", before
    assert before["error"] is None
    first.kill()
    done_before_kill = set(completed(before))
    assert {"extract", "clean"} <= done_before_kill
    assert "publish" not in done_before_kill

    started = time.monotonic()
    second = servers()
    after = second.wait_until(lambda s: s["status"] != "running" and s["finished"] is not None)
    # The default lease lasts 30 s: finishing well within that shows the dead
    # server's lease was taken over at once, not waited out.
    assert time.monotonic() - started < 20
    assert after["error"] is None, after["error"]
    assert after["status"] == "completed", after
    assert after["finished"] == "completed"
    assert after["pid"] == second.proc.pid != first.proc.pid

    restored = [t["step"] for t in after["tasks"] if t["restored"]]
    assert set(restored) >= done_before_kill
    assert restored == STEPS[: len(restored)]  # a prefix of the chain
    # The event stream tells the same story: restored steps are skipped, the rest ran.
    assert after["steps"] == {
        step: "restored" if step in restored else "completed" for step in STEPS
    }
    events = second.get("/events")
    assert [e["step"] for e in events if e["type"] == "TaskSkipped"] == restored
    assert events[0]["type"] == "WorkflowStarted"
    assert events[0]["resume"] is True
    assert events[-1]["type"] == "WorkflowFinished"

    # The call log: every step ran, and a step completed before the kill ran only once.
    log = calls(tmp_path)
    runs = Counter(step for _, step in log)
    assert set(runs) == set(STEPS)
    for step in restored:
        assert runs[step] == 1, log
        assert (first.proc.pid, step) in log
    for step in STEPS[len(restored) :]:
        assert (second.proc.pid, step) in log
    assert {pid for pid, _ in log} <= {first.proc.pid, second.proc.pid}

    outputs = second.get("/result")["outputs"]
    assert outputs[-1] == {
        "published": {"rows": 3, "total": 14},
    }


def test_graceful_shutdown_cancels_the_run_and_a_restart_finishes_it(
    servers: Callable[[], Server], tmp_path: Path
) -> None:
    first = servers()
    before = first.wait_until(lambda s: len(completed(s)) >= 1)
    first.proc.send_signal(signal.SIGTERM)  # uvicorn runs the lifespan's shutdown
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert first.proc.wait(timeout=10) in (0, -signal.SIGTERM)
    # The shutdown hook cancelled the run: it ended "cancelled" and released its lease.
    records = tmp_path / "checkpoints" / "nightly-report"
    assert json.loads((records / "run.json").read_text())["status"] == "cancelled"
    assert json.loads((records / "lease.json").read_text())["released"] is True
    second = servers()
    after = second.wait_until(lambda s: s["finished"] is not None)
    assert after["status"] == "completed", after
    restored = [t["step"] for t in after["tasks"] if t["restored"]]
    assert set(restored) >= set(completed(before))
    runs = Counter(step for _, step in calls(tmp_path))
    assert all(runs[step] == 1 for step in restored)
    assert set(runs) == set(STEPS)
