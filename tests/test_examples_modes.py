"""examples/mode_*.py and examples/storage_*.py, run as a user would: fail, then resume.

Each example is a script run in a new process in a temp folder; the S3 and GCS
ones get their endpoint from the standard environment variables, pointed at the
test session's SeaweedFS and fake-gcs-server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.servers import GCSServer, S3Server

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(example: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("FAIL", "FAIL_STEP")}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        cwd=cwd,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def lines(result: subprocess.CompletedProcess[str], code: int) -> list[str]:
    assert result.returncode == code, result.stdout + result.stderr
    # stderr holds nothing but the report of a failed run that nothing handled
    # (docs/runs.md); a script that exits 1 because its run failed has one
    if code != 0 or result.stderr:
        assert result.stderr.startswith("asyncflow: workflow "), result.stderr
        assert " failed (run " in result.stderr.splitlines()[0]
    return result.stdout.splitlines()


# example, the step made to fail, first run's report, the resumed run's report
MODES = {
    "mode_sequential.py": (
        "load",
        [
            "mode-sequential: failed",
            "  extract: completed -> [3, 1, 2]",
            "  transform: completed -> [1, 2, 3]",
            "  load: failed: load failed (FAIL_STEP=load)",
        ],
        [
            "mode-sequential: completed",
            "  extract: restored",
            "  transform: restored",
            "  load: completed -> {'loaded': 3}",
        ],
    ),
    "mode_sequential_group.py": (
        "load_orders",
        [
            "mode-sequential-group: failed",
            "  [orders] fetch_orders: completed -> [120, 80]",
            "  [orders] load_orders: failed: load_orders failed (FAIL_STEP=load_orders)",
            "  [customers] fetch_customers: completed -> ['ada', 'grace']",
            "  [customers] load_customers: completed -> {'customers': 2}",
        ],
        [
            "mode-sequential-group: completed",
            "  [orders] fetch_orders: restored",
            "  [orders] load_orders: completed -> {'orders': 200}",
            "  [customers] fetch_customers: restored",
            "  [customers] load_customers: restored",
        ],
    ),
    "mode_background.py": (
        "render",
        [
            "did other work while the flow ran",
            "mode-background: failed",
            "  crunch: completed -> 42",
            "  render: failed: render failed (FAIL_STEP=render)",
        ],
        [
            "did other work while the flow ran",
            "mode-background: completed",
            "  crunch: restored",
            "  render: completed -> the answer is 42",
        ],
    ),
    "mode_parallel.py": (
        "fetch:c",
        [
            "mode-parallel: failed",
            "  page-a: completed -> {'page': 'a', 'size': 100}",
            "  page-b: completed -> {'page': 'b', 'size': 100}",
            "  page-c: failed: page c is unavailable (FAIL_STEP=fetch:c)",
            "  page-d: completed -> {'page': 'd', 'size': 100}",
        ],
        [
            "mode-parallel: completed",
            "  page-a: restored",
            "  page-b: restored",
            "  page-c: completed -> {'page': 'c', 'size': 100}",
            "  page-d: restored",
        ],
    ),
}


@pytest.mark.parametrize("example", sorted(MODES))
def test_mode_example_fails_then_resumes(example: str, tmp_path: Path) -> None:
    fail, first, second = MODES[example]
    root = tmp_path / "checkpoints"
    assert lines(run(example, tmp_path, FAIL_STEP=fail, ASYNCFLOW_PATH=str(root)), 1) == first
    assert lines(run(example, tmp_path, ASYNCFLOW_PATH=str(root)), 0) == second
    assert root.is_dir()
    assert not (tmp_path / ".asyncflow").exists()  # the env var was honoured


def test_memory_storage_example(tmp_path: Path) -> None:
    assert lines(run("storage_memory.py", tmp_path), 0) == [
        "first run: failed, ran ['extract', 'load']",
        "second run: completed, ran ['load'], result 6",
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written to disk


def test_file_storage_example_resumes_in_a_new_process(tmp_path: Path) -> None:
    assert lines(run("storage_file.py", tmp_path, FAIL="1"), 1) == [
        "storage-file: failed",
        "  download: completed",
        "  checksum: completed",
        "  archive: failed",
        "records in .asyncflow/storage-file/tasks: ['checksum.json', 'download.json']",
    ]
    assert lines(run("storage_file.py", tmp_path), 0) == [
        "storage-file: completed",
        "  download: restored",
        "  checksum: restored",
        "  archive: completed",
        "records in .asyncflow/storage-file/tasks:"
        " ['archive.json', 'checksum.json', 'download.json']",
    ]


def cloud_twice(example: str, where: str, cwd: Path, env: dict[str, str]) -> None:
    assert lines(run(example, cwd, **env), 0) == [
        f"{where}: completed",
        "  count: completed -> 21",
        "  double: completed -> 42",
    ]
    assert lines(run(example, cwd, **env), 0) == [
        f"{where}: completed",
        "  count: restored -> 21",
        "  double: restored -> 42",
    ]


def test_s3_example_reads_its_endpoint_from_the_environment(
    seaweedfs_server: S3Server, tmp_path: Path
) -> None:
    prefix = f"examples-{uuid.uuid4().hex[:8]}"
    env = {
        "ASYNCFLOW_S3_BUCKET": seaweedfs_server.bucket,
        "ASYNCFLOW_S3_PREFIX": prefix,
        "AWS_ENDPOINT_URL": seaweedfs_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweedfs_server.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs_server.secret_key,
        "AWS_DEFAULT_REGION": seaweedfs_server.region,
        # no profile or config file of this machine leaks in
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    where = f"storage-s3 in s3://{seaweedfs_server.bucket}/{prefix}/"
    cloud_twice("storage_s3.py", where, tmp_path, env)


def test_gcs_example_reads_its_emulator_from_the_environment(
    fake_gcs_server: GCSServer, tmp_path: Path
) -> None:
    prefix = f"examples-{uuid.uuid4().hex[:8]}"
    env = {
        "ASYNCFLOW_GCS_BUCKET": fake_gcs_server.bucket,
        "ASYNCFLOW_GCS_PREFIX": prefix,
        "STORAGE_EMULATOR_HOST": fake_gcs_server.url,
    }
    where = f"storage-gcs in gs://{fake_gcs_server.bucket}/{prefix}/"
    cloud_twice("storage_gcs.py", where, tmp_path, env)
