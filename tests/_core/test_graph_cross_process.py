"""Keys, graphs and maps across processes: crash, edit, resume; the call log proves what ran."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import S3Server

FLOW = Path(__file__).parent / "flows" / "graphs.py"


@dataclass(frozen=True)
class Place:
    url: str
    env: dict[str, str]


@pytest.fixture(params=["file", "s3-seaweedfs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    env = dict(os.environ)
    if request.param == "file":
        return Place(f"file://{tmp_path / 'store'}", env)
    s3: S3Server = request.getfixturevalue("seaweedfs_server")
    env.update(
        AWS_ENDPOINT_URL=s3.endpoint_url,
        AWS_ACCESS_KEY_ID=s3.access_key,
        AWS_SECRET_ACCESS_KEY=s3.secret_key,
        AWS_DEFAULT_REGION=s3.region,
    )
    return Place(f"s3://{s3.bucket}/x-{secrets.token_hex(6)}", env)


def command(place: Place, log: Path, scenario: str, variant: str, trouble: str) -> list[str]:
    return [sys.executable, str(FLOW), place.url, str(log), scenario, variant, trouble]


def run(
    place: Place, log: Path, scenario: str, variant: str = "v1", trouble: str = ""
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command(place, log, scenario, variant, trouble),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=place.env,
    )
    assert done.returncode == 0, done.stderr
    return done


def killed_at(place: Place, log: Path, scenario: str, name: str) -> None:
    """Run until step ``name`` starts, then SIGKILL the process."""
    child = subprocess.Popen(
        command(place, log, scenario, "v1", f"hang:{name}"),
        stdout=subprocess.PIPE,
        text=True,
        env=place.env,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "hanging"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL


LIST = """
import sys, anyio
from asyncflow.providers import storage_from_url
async def main():
    async with storage_from_url(sys.argv[1]) as storage:
        prefix = sys.argv[2] + "/tasks/"
        async for name in storage.list(prefix):
            print(name[len(prefix):-len(".json")])
anyio.run(main)
"""


def records(place: Place, workflow_id: str) -> set[str]:
    """The keys with a checkpoint, read by another process through the backend."""
    done = subprocess.run(
        [sys.executable, "-c", LIST, place.url, workflow_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=place.env,
    )
    return set(done.stdout.split())


def ran(log: Path) -> list[str]:
    names = [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return names


def line(out: str, head: str) -> str:
    return next(text for text in out.splitlines() if text.startswith(head + " "))[len(head) + 1 :]


def test_partial_and_callable_object_steps_resume_in_a_new_process(
    tmp_path: Path, place: Place
) -> None:
    log = tmp_path / "calls.log"
    first = run(place, log, "edit", trouble="load")
    assert line(first.stdout, "keys") == "extract,scale,Offset,load"
    assert ran(log) == ["extract", "scale", "offset", "load"]
    second = run(place, log, "edit")
    assert ran(log) == ["load"]  # the partial and the callable object were restored
    assert line(second.stdout, "outputs") == "[[1, 2, 3], [10, 20, 30], [15, 25, 35], 75]"


def test_inserting_steps_after_a_crash_reruns_only_what_has_no_valid_checkpoint(
    tmp_path: Path, place: Place
) -> None:
    log = tmp_path / "calls.log"
    killed_at(place, log, "edit", "offset")
    assert ran(log) == ["extract", "scale", "offset"]
    resumed = run(place, log, "edit", variant="v2")
    # audit and stamp are new; offset had no checkpoint; load had none either.
    assert ran(log) == ["audit", "offset", "stamp", "load"]
    assert line(resumed.stdout, "keys") == "audit,extract,scale,Offset,stamp,load"
    again = run(place, log, "edit", variant="v2")
    assert ran(log) == []
    assert line(again.stdout, "outputs") == line(resumed.stdout, "outputs")


def test_diamond_crash_then_resume(tmp_path: Path, place: Place) -> None:
    log = tmp_path / "calls.log"
    killed_at(place, log, "diamond", "right")
    first = ran(log)
    assert first[0] == "top"
    assert "bottom" not in first
    committed = records(place, "g-diamond")
    assert "right" not in committed
    resumed = run(place, log, "diamond")
    # exactly the tasks without a checkpoint ran again (left may have committed or not)
    assert sorted(ran(log)) == sorted({"top", "left", "right", "bottom"} - committed)
    assert line(resumed.stdout, "outputs") == "[1, 11, 101, {'left': 11, 'right': 101}]"
    assert line(resumed.stdout, "statuses") == ",".join(["Completed"] * 4)


def test_diamond_failure_stops_dependents_and_resume_runs_the_rest(
    tmp_path: Path, place: Place
) -> None:
    log = tmp_path / "calls.log"
    first = run(place, log, "diamond", trouble="left")
    assert sorted(ran(log)) == ["left", "right", "top"]
    assert line(first.stdout, "statuses") == "Completed,Failed,Completed,Not started"
    run(place, log, "diamond")
    assert ran(log) == ["left", "bottom"]


def test_map_with_failing_children_reruns_only_those(tmp_path: Path, place: Place) -> None:
    log = tmp_path / "calls.log"
    first = run(place, log, "map", trouble="fetch.3,fetch.7")
    assert line(first.stdout, "statuses") == "Completed,Failed,Not started"
    # keep_going is off: children not yet started when a child failed never start
    calls = Counter(ran(log))
    assert calls["pages"] == 1
    assert calls["fetch.3"] == 1
    assert all(count == 1 for count in calls.values())
    resumed = run(place, log, "map")
    second = ran(log)
    assert "pages" not in second
    done_first = {name for name in calls if name.startswith("fetch.")} - {"fetch.3", "fetch.7"}
    children = {f"fetch.{i}" for i in range(10)}
    assert sorted(second) == sorted((children - done_first) | {"total"})
    assert (
        line(resumed.stdout, "outputs") == f"[{list(range(10))}, {[2 * i for i in range(10)]}, 90]"
    )
    again = run(place, log, "map")
    assert ran(log) == []
    assert line(again.stdout, "statuses") == "Completed,Completed,Completed"


def test_map_crash_mid_children_then_resume(tmp_path: Path, place: Place) -> None:
    log = tmp_path / "calls.log"
    killed_at(place, log, "map", "fetch.5")
    ran(log)
    committed = records(place, "g-map")
    assert "fetch.5" not in committed
    # three workers: fetch.5 started only after at least three children committed
    assert len({name for name in committed if name.startswith("fetch.")}) >= 3
    resumed = run(place, log, "map")
    expected = {"pages", "fetch", "total"} | {f"fetch.{i}" for i in range(10)}
    assert sorted(ran(log)) == sorted(expected - committed - {"fetch"})
    assert line(resumed.stdout, "outputs").endswith(", 90]")


def test_child_flow_failure_then_resume_with_its_parent(tmp_path: Path, place: Place) -> None:
    log = tmp_path / "calls.log"
    first = run(place, log, "child", trouble="c2")
    assert ran(log) == ["prepare", "c1", "c2"]
    assert line(first.stdout, "statuses") == "Completed,Failed,Not started"
    assert records(place, "g-child.sub") == {"c1"}  # the child's own workflow
    second = run(place, log, "child")
    assert ran(log) == ["c2", "c3", "finish"]
    expected = "{'child said': ['c3', ['c2', ['c1', 7]]]}"  # c1 got the parent step's input
    assert line(second.stdout, "outputs").endswith(f", {expected}]")
    assert records(place, "g-child") == {"prepare", "sub", "finish"}


def test_child_flow_crash_then_resume(tmp_path: Path, place: Place) -> None:
    log = tmp_path / "calls.log"
    killed_at(place, log, "child", "c3")
    assert ran(log) == ["prepare", "c1", "c2", "c3"]
    run(place, log, "child")
    assert ran(log) == ["c3", "finish"]
    run(place, log, "child")
    assert ran(log) == []
