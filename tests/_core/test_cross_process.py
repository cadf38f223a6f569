"""Crash in one interpreter, resume in another: the call log proves what ran."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import GCSServer, S3Server

FLOW = Path(__file__).parent / "flows" / "crashy.py"
MODES = ["sequential", "sequential_group", "background", "parallel"]


@dataclass(frozen=True)
class Place:
    """A persistent storage URL plus the environment a child needs to reach it."""

    url: str
    env: dict[str, str]


@pytest.fixture(params=["file", "s3-seaweedfs", "gcs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    prefix = f"x-{secrets.token_hex(6)}"
    env = dict(os.environ)
    if request.param == "file":
        return Place(f"file://{tmp_path / 'store'}", env)
    if request.param == "s3-seaweedfs":
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


def run(place: Place, log: Path, mode: str, trouble: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FLOW), place.url, str(log), mode, trouble],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=place.env,
    )


def ran(log: Path) -> list[str]:
    return sorted(line.split()[1] for line in log.read_text().splitlines())


@pytest.mark.parametrize("mode", MODES)
def test_failed_step_is_the_only_one_rerun_in_a_new_process(
    tmp_path: Path, mode: str, place: Place
) -> None:
    log = tmp_path / "calls.log"
    first = run(place, log, mode, trouble="2")
    assert first.returncode == 0, first.stderr
    assert "statuses Completed,Completed,Failed" in first.stdout
    log.unlink()
    second = run(place, log, mode)
    assert second.returncode == 0, second.stderr
    if mode == "parallel":
        # keep_going=False stops new tasks after a failure: step 3 may not have started
        assert ran(log) in (["2"], ["2", "3"])
    else:
        # two groups (g1: 0, 2; g2: 1, 3), so every mode but parallel chains per group
        assert ran(log) == ["2"]
    assert "statuses Completed,Completed,Completed,Completed" in second.stdout
    expected_initial = "'initial': 2"
    assert expected_initial in second.stdout
    if mode != "parallel":
        # chain g1: step 2 received step 0's restored output
        assert "'previous': {'key': '0'" in second.stdout


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_sigkill_mid_step_then_resume(tmp_path: Path, mode: str) -> None:
    url = f"file://{tmp_path / 'store'}"
    place = Place(url, dict(os.environ))
    log = tmp_path / "calls.log"
    child = subprocess.Popen(
        [sys.executable, str(FLOW), url, str(log), mode, "hang:2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "hanging"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert "2" in ran(log)
    tasks_dir = tmp_path / "store" / "crashy" / "tasks"
    committed = (
        {p.stem for p in tasks_dir.iterdir() if not p.name.startswith(".")}
        if tasks_dir.exists()
        else set()
    )
    assert "2" not in committed
    log.unlink()
    second = run(place, log, mode)
    assert second.returncode == 0, second.stderr
    # exactly the steps that had no checkpoint when the process died run again
    assert ran(log) == sorted({"0", "1", "2", "3"} - committed)
    records = sorted(p.name for p in tasks_dir.iterdir() if not p.name.startswith("."))
    assert records == ["0.json", "1.json", "2.json", "3.json"]


PAYLOADS = Path(__file__).parent / "flows" / "payloads.py"


def test_pydantic_outputs_resume_in_a_new_process(tmp_path: Path, place: Place) -> None:
    """Registered Pydantic models (one of them offloaded to a blob) come back as themselves."""
    log = tmp_path / "calls.log"

    def run_payloads(trouble: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(PAYLOADS), place.url, str(log), trouble],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=place.env,
        )

    first = run_payloads("pay")
    assert first.returncode == 0, first.stderr
    assert "statuses Completed,Completed,Failed" in first.stdout
    second = run_payloads()
    assert second.returncode == 0, second.stderr
    assert ran(log) == ["big", "issue", "pay", "pay"]
    assert "statuses Completed,Completed,Completed" in second.stdout
    assert (
        "types ['Invoice', 'Invoice', 'Invoice'] amounts ['Decimal'] lines [1, 301, 301]"
        " status Status.PAID issued 2024-05-01T09:30:00+00:00"
    ) in second.stdout
