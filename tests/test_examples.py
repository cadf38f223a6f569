"""The README's example, run as a user would: crash, then resume in a new process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ETL = Path(__file__).parent.parent / "examples" / "etl.py"


def etl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ETL), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_etl_fails_then_resumes_skipping_the_first_two_steps(tmp_path: Path) -> None:
    for _ in range(2):  # repeatable: --fresh starts over each time
        first = etl(tmp_path, "--fresh", "--fail-last")
        assert first.returncode == 1, first.stderr
        assert "workflow my-etl-pipeline: failed" in first.stdout
        assert "step_three  failed: RuntimeError('the warehouse is down" in first.stdout
        assert "step_one    completed" in first.stdout

        second = etl(tmp_path)
        assert second.returncode == 0, second.stderr
        lines = second.stdout.splitlines()
        assert lines[0] == "workflow my-etl-pipeline: completed"
        assert lines[1] == "  step_one    skipped (restored from checkpoint)"
        assert lines[2] == "  step_two    skipped (restored from checkpoint)"
        assert lines[3] == (
            "  step_three  completed -> {'loaded': {'transformed': {'extracted': True}}}"
        )
    records = sorted(
        p.name for p in (tmp_path / ".asyncflow" / "my-etl-pipeline" / "tasks").iterdir()
    )
    assert records == ["step_one.json", "step_three.json", "step_two.json"]
