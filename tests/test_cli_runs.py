"""Runs from the command line, in real processes: list, status, reset, fork, signals, width."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import S3Server

FLOW = textwrap.dedent(
    """
    import os
    import anyio
    from asyncflow import AsyncFlow, Config, action
    from asyncflow.providers import StorageDefault

    @action
    def extract():
        return [1, 2, 3]

    @action
    def transform(previous_context):
        if os.environ.get("FAIL") == "1":
            raise ValueError("the warehouse rejected row 7: " + "x" * 150 + " END")
        return [n * 2 for n in previous_context.storage or []]

    @action
    async def load(previous_context):
        marker = os.environ.get("MARKER")
        if marker:
            open(marker, "w").close()
            await anyio.sleep(60)
        return sum(previous_context.storage or [])

    flow = AsyncFlow(config=Config(storage=StorageDefault()), workflow_id="etl")
    flow.task.add(step=extract, key="extract")
    flow.task.add(step=transform, key="transform")
    flow.task.add(step=load, key="load")
    """
)


@dataclass(frozen=True)
class Place:
    url: str
    env: dict[str, str]


@pytest.fixture(params=["file", "s3-seaweedfs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    env = {k: v for k, v in os.environ.items() if k not in ("FAIL", "MARKER", "COLUMNS")}
    if request.param == "file":
        return Place(f"file://{tmp_path / 'store'}", env)
    s3: S3Server = request.getfixturevalue("seaweedfs_server")
    env.update(
        AWS_ENDPOINT_URL=s3.endpoint_url,
        AWS_ACCESS_KEY_ID=s3.access_key,
        AWS_SECRET_ACCESS_KEY=s3.secret_key,
        AWS_DEFAULT_REGION=s3.region,
    )
    return Place(f"s3://{s3.bucket}/cli-{secrets.token_hex(6)}", env)


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "etl_flow.py"
    path.write_text(FLOW)
    return path


def cli(
    place: Place, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**place.env, "ASYNCFLOW_STORAGE": place.url, **env},
        cwd=cwd,
    )


def test_list_status_reset_fork(place: Place, flow_file: Path) -> None:
    failed = cli(place, "run", str(flow_file), FAIL="1")
    assert failed.returncode == 1, failed.stderr
    assert "END" in failed.stdout  # the whole error, on one line, piped

    listed = cli(place, "list")
    assert listed.returncode == 0, listed.stderr
    assert "etl" in listed.stdout
    assert "failed" in listed.stdout
    as_json = json.loads(cli(place, "list", "--status", "failed", "--format", "json").stdout)
    assert [w["workflow_id"] for w in as_json] == ["etl"]
    assert json.loads(cli(place, "list", "--status", "completed", "--format", "json").stdout) == []
    none = cli(place, "list", "--status", "completed", "--since", "1d")
    assert none.returncode == 0, none.stderr
    assert "no workflows match --status completed --since 1d in " in none.stdout

    shown = cli(place, "status", "etl")
    assert shown.returncode == 0, shown.stderr
    assert "transform (key transform) failed after 1 attempt(s): ValueError:" in shown.stdout
    body = json.loads(cli(place, "status", "etl", "--format", "json").stdout)
    (run,) = body["runs"]
    assert run["status"] == "failed"
    errors = [t["error"] for t in run["tasks"] if t["error"]]
    assert errors[0]["type"] == "ValueError"
    one = cli(place, "status", "etl", "--run", run["run_id"])
    assert "Traceback" in one.stdout
    assert 'raise ValueError("the warehouse' in one.stdout

    typo = cli(place, "status", "elt")
    assert typo.returncode == 1
    assert "did you mean 'etl'?" in typo.stderr

    forked = cli(place, "fork", "etl", "etl2", "--from", "transform")
    assert forked.returncode == 0, forked.stderr
    assert "1 checkpoint(s) (extract)" in forked.stdout
    resumed = cli(place, "run", str(flow_file), "--workflow-id", "etl2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    state = json.loads(cli(place, "status", "etl2", "--format", "json").stdout)
    outcomes = {t["key"]: t["status"] for t in state["tasks"]}
    assert outcomes == {"extract": "skipped", "transform": "completed", "load": "completed"}
    assert [r["status"] for r in state["runs"]] == ["forked", "completed"]

    done = cli(place, "run", str(flow_file), "--resume")
    assert done.returncode == 0, done.stderr
    listed = cli(place, "list", "--status", "completed", "--format", "json")
    assert sorted(w["workflow_id"] for w in json.loads(listed.stdout)) == ["etl", "etl2"]
    reset = cli(place, "reset", "etl", "--from", "transform")
    assert reset.returncode == 0, reset.stderr
    assert "reset 2 task(s): transform, load" in reset.stdout
    listed = cli(place, "list")
    assert re.search(r"etl\s.*\breset\b", listed.stdout), listed.stdout
    reset_ids = json.loads(cli(place, "list", "--status", "reset", "--format", "json").stdout)
    assert [w["workflow_id"] for w in reset_ids] == ["etl"]
    completed = json.loads(cli(place, "list", "--status", "completed", "--format", "json").stdout)
    assert [w["workflow_id"] for w in completed] == ["etl2"]  # etl is no longer "completed"
    shown = cli(place, "status", "etl")
    assert "workflow etl: reset" in shown.stdout
    assert "`asyncflow run --resume` re-runs the tasks shown as not run" in shown.stdout
    state = json.loads(cli(place, "status", "etl", "--format", "json").stdout)
    assert state["status"] == "reset"
    outcomes = {t["key"]: t["status"] for t in state["tasks"]}
    assert outcomes == {"extract": "skipped", "transform": "not run", "load": "not run"}
    again = cli(place, "run", str(flow_file), "--resume")
    assert again.returncode == 0, again.stderr
    state = json.loads(cli(place, "status", "etl", "--format", "json").stdout)
    outcomes = {t["key"]: t["status"] for t in state["tasks"]}
    assert outcomes == {"extract": "skipped", "transform": "completed", "load": "completed"}
    assert state["status"] == "completed"
    assert len(state["runs"]) == 3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_a_real_run_ends_it_cancelled_naming_the_task(
    tmp_path: Path, flow_file: Path, signum: int
) -> None:
    place = Place(f"file://{tmp_path / 'store'}", dict(os.environ))
    marker = tmp_path / "in-load"
    env = {**place.env, "ASYNCFLOW_STORAGE": place.url, "MARKER": str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncflow", "run", str(flow_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    run_json = json.loads((tmp_path / "store" / "etl" / "run.json").read_text())
    assert run_json["status"] == "cancelled", err
    assert run_json["interrupted"] == ["load"]
    (summary_file,) = (tmp_path / "store" / "etl" / "runs").iterdir()
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "cancelled"
    assert summary["interrupted"] == ["load"]
    shown = cli(place, "status", "etl")
    assert "interrupted in: load" in shown.stdout


def test_output_fits_80_columns_and_stays_whole_piped(tmp_path: Path, flow_file: Path) -> None:
    place = Place(f"file://{tmp_path / 'store'}", dict(os.environ))
    ran = cli(place, "run", str(flow_file), FAIL="1", COLUMNS="80")
    listed = cli(place, "list", COLUMNS="80")
    shown = cli(place, "status", "etl", COLUMNS="80")
    run_id = json.loads(cli(place, "status", "etl", "--format", "json").stdout)["run_id"]
    one = cli(place, "status", "etl", "--run", run_id, COLUMNS="80")
    for done in (ran, listed, shown, one):
        # every line but the error message (whole) and the traceback's paths fits
        lines = [line for line in done.stdout.splitlines() if "END" not in line]
        lines = [line for line in lines if not line.startswith("  File ")]
        assert all(len(line) <= 80 for line in lines), done.stdout
    for done in (ran, shown, one):
        (line,) = [line for line in done.stdout.splitlines() if "failed after" in line]
        assert line.endswith(" END")  # the whole message, never cut or wrapped
    assert run_id in one.stdout


def test_clear_leaves_no_lock_files_nor_empty_folders(tmp_path: Path, flow_file: Path) -> None:
    store = tmp_path / "store"
    place = Place(f"file://{store}", dict(os.environ))
    assert cli(place, "run", str(flow_file)).returncode == 0
    assert list(store.rglob(".*.lock"))
    (store / "keep.txt").write_text("not asyncflow's")
    cleared = cli(place, "clear", "etl", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert sorted(p.name for p in store.rglob("*")) == ["keep.txt"]


def test_max_concurrency_and_mode_suggestions(tmp_path: Path, flow_file: Path) -> None:
    place = Place(f"file://{tmp_path / 'store'}", dict(os.environ))
    bad = cli(place, "run", str(flow_file), "--mode", "paralel")
    assert bad.returncode == 2
    assert "did you mean 'parallel'?" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    attr = cli(place, "run", f"{flow_file}:flw")
    assert "did you mean 'flow'?" in attr.stderr
    ok = cli(place, "run", str(flow_file), "--mode", "parallel", "--max-concurrency", "1")
    assert ok.returncode == 0, ok.stderr
    zero = cli(place, "run", str(flow_file), "--max-concurrency", "0")
    assert zero.returncode == 2


def test_piped_without_columns_ids_stay_whole(tmp_path: Path, flow_file: Path) -> None:
    place = Place(f"file://{tmp_path / 'store'}", dict(os.environ))
    long_id = "nightly-warehouse-load-" + "z" * 90
    assert cli(place, "run", str(flow_file), "--workflow-id", long_id).returncode == 0
    listed = cli(place, "list")
    assert any(long_id in line for line in listed.stdout.splitlines()), listed.stdout
    narrow = cli(place, "list", COLUMNS="80")
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines()), narrow.stdout
