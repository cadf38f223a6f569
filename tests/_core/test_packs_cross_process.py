"""Packs across processes: one interpreter packs, another resumes from the pack,
a third finds records rewritten by a killed run and reads those from their keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests._core.test_cross_process import Place, place  # noqa: F401  (the fixture)

FLOW = Path(__file__).parent / "flows" / "packed.py"


def run(where: Place, log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FLOW), where.url, str(log), "60", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=where.env,
    )


def ran(log: Path) -> list[str]:
    found = [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return found


def test_a_new_process_resumes_from_the_pack_and_never_from_a_stale_copy(
    tmp_path: Path,
    place: Place,  # noqa: F811
) -> None:
    log = tmp_path / "calls.log"
    first = run(place, log, "1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[:2] == ["last", "60"]
    assert len(ran(log)) == 60

    second = run(place, log, "1")  # a fresh interpreter: everything from the pack
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["last", "60", "records", "0", "packs", "1"]
    assert ran(log) == []

    # re-run from s40 with other values, killed at s50: s40..s49 rewritten, no new pack
    third = run(place, log, "1000", "s40", "s50")
    assert third.returncode == -9, third.stderr
    assert ran(log) == [f"s{i}" for i in range(40, 50)]

    fourth = run(place, log, "1")
    assert fourth.returncode == 0, fourth.stderr
    assert ran(log) == [f"s{i}" for i in range(50, 60)]
    # s49 holds 40 + 10 * 1000 (the killed run's), never 50 (the pack's stale copy)
    last, records, packs = fourth.stdout.split()[1::2]
    assert last == str(40 + 10 * 1000 + 10)
    assert records == "10"  # the ten rewritten records, from their own keys
    assert packs == "1"
