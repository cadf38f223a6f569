"""``asyncflow schedule``: a real process, real (one-second) ticks, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from asyncflow.cli import cli

FLOW = textwrap.dedent(
    """
    import os
    import anyio
    from asyncflow import AsyncFlow, Config, action
    from asyncflow.providers import StorageFile

    @action
    async def step_one():
        await anyio.sleep(float(os.environ["STEP_SECONDS"]))
        return 1

    flow = AsyncFlow(config=Config(storage=StorageFile()), workflow_id="tick")
    flow.task.add(step=step_one)
    """
)


def start(tmp_path: Path, seconds: float, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "flow.py").write_text(FLOW)
    return subprocess.Popen(
        [sys.executable, "-m", "asyncflow", "schedule", "flow.py", "--cron", "* * * * * *", *args],
        cwd=tmp_path,
        env={**os.environ, "STEP_SECONDS": str(seconds)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_status(tmp_path: Path, status: str, timeout: float = 15.0) -> None:
    manifest = tmp_path / ".asyncflow" / "tick" / "run.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(manifest.read_text())["status"] == status:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"run.json never said {status!r}")


def manifest_status(tmp_path: Path) -> str:
    status: str = json.loads((tmp_path / ".asyncflow" / "tick" / "run.json").read_text())["status"]
    return status


def test_runs_every_tick_and_sigterm_stops_it_cleanly(tmp_path: Path) -> None:
    process = start(tmp_path, 0.0)
    try:
        wait_for_status(tmp_path, "completed")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "tick: completed (1 completed)" in out
    assert "scheduling tick: '* * * * * *' (UTC), overlap skip" in err
    assert "stopped scheduling tick" in err


def test_a_second_sigint_cancels_the_run_in_flight_and_its_checkpoints_stay(
    tmp_path: Path,
) -> None:
    process = start(tmp_path, 60.0)
    try:
        wait_for_status(tmp_path, "running")
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert process.poll() is None  # still waiting for the run
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "SIGINT: stopping; waiting for 1 run(s) (again cancels them)" in err
    assert "SIGINT: cancelling the runs in flight" in err
    assert "tick: cancelled" in out
    assert manifest_status(tmp_path) == "cancelled"  # the next tick or --resume resumes it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "every minute"], "not a valid cron expression"),
        (["--cron", "* * * * *", "--tz", "Mars/Olympus"], "unknown time zone"),
        (["--cron", "* * * * *", "--overlap", "merge"], "'merge' is not one of"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    result = CliRunner().invoke(cli, ["schedule", str(tmp_path / "flow.py"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
