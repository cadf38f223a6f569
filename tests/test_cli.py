"""The ``asyncflow`` command: real processes on file storage, and click's CliRunner."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import rich.console
import rich.progress
from click.testing import CliRunner

from asyncflow import AsyncFlow, Context, action
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.lease import LeaseRecord, lease_key
from asyncflow._kernel.manifest import Manifest
from asyncflow.cli import cli
from asyncflow.cli.run import watch as _watch
from asyncflow.providers import StorageDefault, StorageFile
from asyncflow.reading import read_run
from tests.test_mermaid import SEED_FAILED, SEED_RESUMED

ROOT = Path(__file__).parent.parent
ETL = ROOT / "examples" / "etl.py"

FLOW = textwrap.dedent(
    """
    import os
    from asyncflow import AsyncFlow, Config, action
    from asyncflow.providers import StorageFile

    @action
    async def step_one():
        return {"extracted": True}

    @action(retry=2)
    async def step_two(previous_context):
        return {"transformed": previous_context.storage}

    @action
    def step_three(previous_context):
        if os.environ.get("ETL_FAIL"):
            raise RuntimeError("the warehouse is down")
        return {"loaded": previous_context.storage}

    flow = AsyncFlow(config=Config(storage=StorageFile()), workflow_id="etl")
    flow.task.add(step=step_one)
    flow.task.add(step=step_two)
    flow.task.add(step=step_three)

    if __name__ == "__main__":
        raise SystemExit("the CLI must not run the __main__ block")
    """
)

FACTORIES = textwrap.dedent(
    """
    from pathlib import Path

    import anyio
    from asyncflow import AsyncFlow, action

    @action
    def one():
        with Path(__file__).with_suffix(".calls").open("a") as log:
            log.write("one\\n")
        return 1

    def build():
        flow = AsyncFlow(workflow_id="made")
        flow.task.add(step=one)
        return flow

    async def abuild():
        return build()

    def runs_itself():
        flow = build()
        anyio.run(flow.start)
        return flow

    def not_a_flow():
        return 42

    first = build()
    second = build()
    """
)


def asyncflow(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncflow", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "etl_flow.py"
    path.write_text(FLOW)
    return path


def test_fail_status_resume_status_clear_in_real_processes(tmp_path: Path, flow_file: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    failed = asyncflow("run", str(flow_file), "--storage", url, cwd=tmp_path, env={"ETL_FAIL": "1"})
    assert failed.returncode == 1, failed.stderr
    assert "the CLI must not run" not in failed.stderr
    assert "workflow etl: failed" in failed.stdout
    assert "failed after 1 attempt(s): RuntimeError: the warehouse is down" in failed.stdout
    assert "Traceback" not in failed.stderr  # the CLI shows the failure itself
    assert not (tmp_path / ".asyncflow").exists()  # --storage replaced the flow's storage

    mermaid = asyncflow("status", "etl", "--storage", url, "--format", "mermaid", cwd=tmp_path)
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout == SEED_FAILED

    table = asyncflow("status", "etl", "--storage", url, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "workflow etl: failed" in table.stdout
    assert (
        "step_three (key step_three) failed after 1 attempt(s): RuntimeError: the warehouse"
        " is down" in table.stdout
    )

    resumed = asyncflow("run", f"{flow_file}:flow", "--storage", url, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "workflow etl: completed" in resumed.stdout

    mermaid = asyncflow("status", "etl", "--storage", url, "--format", "mermaid", cwd=tmp_path)
    assert mermaid.stdout == SEED_RESUMED

    raw = asyncflow("status", "etl", "--storage", url, "--format", "json", cwd=tmp_path)
    state = json.loads(raw.stdout)
    assert state["status"] == "completed"
    assert [t["status"] for t in state["tasks"]] == ["skipped", "skipped", "completed"]
    assert [t["step"] for t in state["tasks"]] == ["step_one", "step_two", "step_three"]
    assert all(t["checkpoint"] for t in state["tasks"])
    assert state["lease"]["released"] is True

    cleared = asyncflow("clear", "etl", "--storage", url, "--yes", cwd=tmp_path)
    assert cleared.returncode == 0, cleared.stderr
    assert "deleted 6 record(s)" in cleared.stdout  # run.json, 2 run summaries, 3 tasks
    assert list((tmp_path / "store").rglob("*")) == []  # no lock file, no empty folder
    gone = asyncflow("status", "etl", "--storage", url, cwd=tmp_path)
    assert gone.returncode == 1
    assert gone.stderr == f"error: no workflow etl in {url}\n"


def test_run_examples_etl_whose_main_runs_the_flow_itself(tmp_path: Path) -> None:
    done = asyncflow("run", str(ETL), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ran the flow itself; showing its result" in done.stderr
    assert "workflow my-etl-pipeline: completed" in done.stdout
    assert sorted(p.name for p in (tmp_path / ".asyncflow/my-etl-pipeline/tasks").iterdir()) == [
        "step_one.json",
        "step_three.json",
        "step_two.json",
    ]
    # main() resumes: the CLI reported its run and did not start a second one
    again = asyncflow("run", f"{ETL}:main", "--storage", "memory://", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "(--storage not applied)" in again.stderr
    assert again.stdout.count("skipped") == 3
    status = asyncflow("status", "my-etl-pipeline", "--format", "json", cwd=tmp_path)
    assert [t["status"] for t in json.loads(status.stdout)["tasks"]] == ["skipped"] * 3


def test_python_dash_m_and_errors_are_one_line(tmp_path: Path) -> None:
    helped = asyncflow("--help", cwd=tmp_path)
    assert helped.returncode == 0
    assert "status" in helped.stdout
    for args, message in [
        (["run", "missing.py"], "error: no such file: missing.py"),
        (["run", "x.py", "--bogus"], "error: No such option '--bogus'."),
        (["status", "../escape"], "error: workflow id '../escape' is not allowed"),
        (["status", "wf", "--storage", "ftp://host"], "error: storage URL scheme 'ftp'"),
        (["status", "wf", "--format", "svg"], "error: Invalid value for '--format'"),
    ]:
        result = asyncflow(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(message), result.stderr


def test_without_the_extra_the_error_names_it(tmp_path: Path) -> None:
    code = "import sys; sys.modules['click'] = None; import asyncflow.cli"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "pip install 'asyncflow-durable[cli]'" in result.stderr
    code = "import sys, runpy; sys.modules['rich'] = None; runpy.run_module('asyncflow')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: the asyncflow command line needs its extra (rich.console is missing):"
        " pip install 'asyncflow-durable[cli]'"
    )


def test_the_core_never_imports_the_cli() -> None:
    code = (
        "import sys, asyncflow, asyncflow.providers, asyncflow.mermaid, asyncflow.testing;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich')"
        " or m == 'asyncflow.cli'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- CliRunner


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    path = tmp_path / "factories.py"
    path.write_text(FACTORIES)
    return path


@pytest.mark.parametrize("attr", ["build", "abuild", "first"])
def test_a_flow_or_a_sync_or_async_factory_is_run(
    factories: Path, tmp_path: Path, attr: str
) -> None:
    url = f"file://{tmp_path / 'store'}"
    code, out, err = invoke("run", f"{factories}:{attr}", "--storage", url, "--workflow-id", "w1")
    assert code == 0, err
    assert "workflow w1: completed" in out
    assert (tmp_path / "store" / "w1" / "tasks" / "one.json").exists()


def test_a_factory_that_ran_the_flow_is_reported_not_rerun(factories: Path) -> None:
    code, _, err = invoke("run", f"{factories}:runs_itself", "--resume")
    assert code == 0, err
    assert err.startswith(f"note: {factories}:runs_itself ran the flow itself")
    assert "(--resume not applied)" in err
    assert factories.with_suffix(".calls").read_text() == "one\n"  # once, by the factory


def test_target_errors(factories: Path) -> None:
    code, _, err = invoke("run", str(factories))
    assert code == 2
    assert "defines several flows (first, second); name one" in err
    code, _, err = invoke("run", f"{factories}:not_a_flow")
    assert (code, err) == (2, f"error: {factories}:not_a_flow() is not an AsyncFlow (got int)\n")
    code, _, err = invoke("run", f"{factories}:anyio")
    assert code == 2
    assert "is not an AsyncFlow (got module)" in err


def test_a_broken_flow_file_is_one_line_or_a_traceback_with_debug(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise KeyError('nope')\n")
    code, _, err = invoke("run", str(path))
    assert (code, err) == (2, f"error: importing {path} failed: KeyError: 'nope'\n")
    code, _, err = invoke("run", str(path), "--debug")
    assert code == 2
    assert "Traceback (most recent call last)" in err
    assert err.endswith(f"error: importing {path} failed: KeyError: 'nope'\n")


def test_resume_needs_a_fixed_workflow_id_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "anon.py"
    path.write_text(
        "from asyncflow import AsyncFlow\nflow = AsyncFlow()\nflow.task.add(step=len)\n"
    )
    code, _, err = invoke("run", str(path), "--resume")
    assert code == 2
    assert err.startswith("error: resume=True needs a fixed workflow id")


def write_flow(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "three.py"
    path.write_text(
        "from asyncflow import AsyncFlow, action\n"
        "@action\ndef a():\n    return 1\n"
        "@action\ndef b():\n    raise ValueError('bad b')\n"
        "@action\ndef c():\n    return 3\n"
        "flow = AsyncFlow(workflow_id='three')\n"
        "flow.task.add(step=[a, b, c])\n" + body
    )
    return path


def test_a_failed_run_shows_the_failed_and_the_not_run_tasks(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 's'}"
    path = write_flow(tmp_path, "")
    code, out, _ = invoke("run", str(path), "--storage", url)
    assert code == 1
    code, out, _ = invoke("status", "three", "--storage", url, "--format", "mermaid")
    assert out.splitlines()[1:4] == [
        "A[a] -->|completed| B[b]",
        "B -->|failed| C[c]",
        "C -->|not run| D((stop))",
    ]
    code, out, _ = invoke("status", "three", "--storage", url, "--format", "json")
    tasks = json.loads(out)["tasks"]
    assert [t["status"] for t in tasks] == ["completed", "failed", "not run"]
    assert tasks[1]["error"] == "ValueError('bad b')"
    code, out, _ = invoke("run", str(path), "--storage", url, "--keep-going", "--mode", "parallel")
    assert code == 1
    code, out, _ = invoke("status", "three", "--storage", url, "--format", "json")
    state = json.loads(out)
    assert state["mode"] == "parallel"
    assert [t["status"] for t in state["tasks"]] == ["completed", "failed", "completed"]


def test_a_graph_flow_runs_as_a_graph_with_storage_and_id_replaced(tmp_path: Path) -> None:
    """`asyncflow run` keeps dependencies and maps when it rebuilds the flow."""
    path = tmp_path / "g.py"
    path.write_text(
        "from asyncflow import AsyncFlow, action\n"
        "@action\ndef items():\n    return [1, 2]\n"
        "@action\ndef double(initial_context):\n    return 2 * initial_context.storage\n"
        "@action\ndef total(previous_context):\n    return sum(previous_context.storage)\n"
        "flow = AsyncFlow(workflow_id='g')\n"
        "flow.task.add(step=items)\n"
        "flow.task.map(double, over='items', key='double')\n"
        "flow.task.add(step=total, depends_on='double')\n"
    )
    url = f"file://{tmp_path / 's'}"
    code, out, err = invoke("run", str(path), "--storage", url, "--workflow-id", "g2")
    assert code == 0, err
    code, out, _ = invoke("status", "g2", "--storage", url, "--format", "json")
    state = json.loads(out)
    assert state["mode"] == "graph"
    assert [t["key"] for t in state["tasks"]] == ["items", "double", "total"]
    assert state["tasks"][2]["depends_on"] == ["double"]
    assert (tmp_path / "s" / "g2" / "tasks" / "double.1.json").exists()


def test_status_of_a_manifest_without_outcomes_falls_back_to_the_records() -> None:
    storage = StorageDefault()

    @action
    def a() -> int:
        return 1

    flow = AsyncFlow(workflow_id="old")
    flow.config = type(flow.config)(storage=storage)
    flow.task.add(step=a, key="0")  # an old manifest: positional keys

    async def scenario() -> None:
        await flow.start()
        old = Manifest(
            workflow_id="old",
            status="failed",
            fingerprint=None,
            mode="sequential",
            tasks=("0", "1", "2"),
            created_at=1.0,
            updated_at=2.0,
        )
        await storage.write(manifest_key("old"), old.encode())
        state = await read_run(storage, "old")
        assert state is not None
        assert [(t.key, t.step, t.status) for t in state.tasks] == [
            (
                "0",
                "test_status_of_a_manifest_without_outcomes_falls_back_to_the_records.<locals>.a",
                "completed",
            ),
            ("1", "1", "failed"),
            ("2", "2", "not run"),
        ]

    anyio.run(scenario)


def live_lease(root: Path, workflow_id: str) -> None:
    now = time.time()
    record = LeaseRecord(
        workflow_id=workflow_id,
        runner_id="f" * 32,
        host=socket.gethostname() + "-elsewhere",
        boot_id="",
        pid=1,
        pid_start="",
        generation=1,
        acquired_at=now,
        expires_at=now + 600.0,
    )
    anyio.run(StorageFile(str(root)).write, lease_key(workflow_id), record.encode())


def test_clear_asks_refuses_a_live_lease_and_forces(tmp_path: Path) -> None:
    root = tmp_path / "s"
    url = f"file://{root}"
    path = write_flow(tmp_path, "")
    invoke("run", str(path), "--storage", url)
    code, _, err = invoke("clear", "three", "--storage", url, input="n\n")
    assert code == 1
    assert err.endswith("error: not confirmed; nothing deleted\n")
    assert (root / "three" / "run.json").exists()

    live_lease(root, "three")
    code, out, _ = invoke("status", "three", "--storage", url)
    assert "lease: live: runner ffffffff" in out
    code, _, err = invoke("clear", "three", "--storage", url, "--yes")
    assert code == 1
    assert err.startswith("error: workflow three is being run by runner ffff")
    assert (root / "three" / "run.json").exists()

    code, out, err = invoke("clear", "three", "--storage", url, "--yes", "--force")
    assert code == 0, err
    assert list(root.rglob("*.json")) == []

    code, out, _ = invoke("clear", "three", "--storage", url, input="y\n")
    assert (code, out) == (0, f"no workflow three in {url} (no run.json); nothing deleted\n")


def test_clear_of_a_folder_that_is_not_a_workflow_deletes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "tasks").mkdir(parents=True)
    files = {
        src / "main.py": b"print('hi')\n",
        src / "tasks" / "build.json": b'{"not": "a record"}',
        src / "lease.json": b"{}",
        tmp_path / "src.v2" / "run.json": b"{}",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    code, out, err = invoke("clear", "src", "--storage", f"file://{tmp_path}", "--yes")
    assert code == 0, err
    assert out == (
        f"no workflow src in file://{tmp_path} (no run.json); nothing deleted"
        " (did you mean 'src.v2'?)\n"
    )
    assert all(path.read_bytes() == data for path, data in files.items())


def test_clear_deletes_only_the_workflows_own_records(tmp_path: Path) -> None:
    root = tmp_path / "s"
    url = f"file://{root}"
    invoke("run", str(write_flow(tmp_path, "")), "--storage", url)
    (root / "three" / "invoice.pdf").write_bytes(b"%PDF")
    (root / "three" / "tasks" / "notes.txt").write_bytes(b"mine")
    code, out, err = invoke("clear", "three", "--storage", url, "--yes")
    assert code == 0, err
    assert "deleted 3 record(s)" in out  # run.json, its run summary, the completed task
    assert (root / "three" / "invoice.pdf").read_bytes() == b"%PDF"
    assert (root / "three" / "tasks" / "notes.txt").read_bytes() == b"mine"


def test_clear_of_a_parent_clears_its_child_flows_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "s"
    url = f"file://{root}"
    path = tmp_path / "nested.py"
    path.write_text(
        "from asyncflow import AsyncFlow, action\n"
        "@action\ndef a():\n    return 1\n"
        "inner = AsyncFlow()\ninner.task.add(step=a)\n"
        "child = AsyncFlow()\nchild.task.add(step=a)\nchild.task.add(step=inner, key='deep')\n"
        "flow = AsyncFlow(workflow_id='top')\n"
        "flow.task.add(step=a)\nflow.task.add(step=child, key='sub')\n"
    )
    code, _, err = invoke("run", f"{path}:flow", "--storage", url)
    assert code == 0, err
    assert (root / "top.sub.deep" / "run.json").exists()
    invoke("run", str(write_flow(tmp_path, "")), "--storage", url)  # "three": not a child
    (root / "top.subway").mkdir()
    (root / "top.subway" / "run.json").write_bytes(b"not ours to judge")

    code, out, err = invoke("clear", "top", "--storage", url, input="y\n")
    assert code == 0, err
    assert "and its child flow(s) top.sub, top.sub.deep in" in err  # the question
    assert out.startswith("workflow top and its child flow(s) top.sub, top.sub.deep: deleted ")
    for gone in ("top", "top.sub", "top.sub.deep"):
        assert not (root / gone).exists(), gone
    assert (root / "top.subway" / "run.json").read_bytes() == b"not ours to judge"
    assert (root / "three" / "run.json").exists()


def test_clear_after_confirmation(tmp_path: Path) -> None:
    root = tmp_path / "s"
    url = f"file://{root}"
    invoke("run", str(write_flow(tmp_path, "")), "--storage", url)
    code, out, err = invoke("clear", "three", "--storage", url, input="y\n")
    assert code == 0, err
    assert "deleted 3 record(s)" in out  # run.json, its run summary, the one completed task
    assert list(root.rglob("*.json")) == []


def test_the_progress_bar_counts_from_the_event_stream() -> None:
    attempts: list[int] = []

    @action(retry=3)
    async def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("again")
        return 1

    @action
    async def broken() -> None:
        raise RuntimeError("no")

    flow = AsyncFlow(workflow_id="bar")
    flow.task.add(step=flaky)
    flow.task.add(step=flaky, key="again")
    flow.task.add(step=broken)
    screen = io.StringIO()
    console = rich.console.Console(file=screen, force_terminal=True, width=160)

    async def start() -> None:
        await flow.start(keep_going=True)

    anyio.run(_watch, flow, console, start)
    text = screen.getvalue()
    assert "done 2 · skipped 0 · failed 1 · retries 2" in text
    assert "3/3" in text


def test_the_progress_bar_counts_map_children_as_they_appear() -> None:
    @action
    async def items() -> list[int]:
        return [1, 2, 3, 4, 5]

    @action
    async def double(initial_context: Context) -> int:
        return 2 * initial_context.storage

    flow = AsyncFlow(workflow_id="bar")
    flow.task.add(step=items)
    flow.task.map(double, over="items", key="double")
    screen = io.StringIO()
    console = rich.console.Console(file=screen, force_terminal=True, width=160)

    async def start() -> None:
        await flow.start(mode="graph")

    anyio.run(_watch, flow, console, start)
    text = screen.getvalue()
    assert "done 7 · skipped 0 · failed 0" in text  # 2 tasks + 5 children
    assert "7/7" in text


def test_the_progress_bar_counts_tasks_in_flight() -> None:
    from asyncflow import events
    from asyncflow.cli.run import RunProgress

    progress = rich.progress.Progress(disable=True)
    bar = RunProgress(progress, 2)

    def task(kind: Any, key: str, **fields: Any) -> Any:
        return kind(workflow_id="w", task_id=0, key=key, step=key, **fields)

    def running() -> int:
        return int(progress.tasks[0].fields["running"])

    bar.handle(task(events.TaskStarted, "m", attempt=1))
    bar.handle(task(events.TaskStarted, "m.0", attempt=1))
    bar.handle(task(events.TaskStarted, "m.1", attempt=1))
    assert running() == 3
    assert progress.tasks[0].total == 3  # grew from 2 as children appeared
    bar.handle(task(events.TaskCompleted, "m.0", attempts=1, duration=0.1))
    bar.handle(task(events.TaskFailed, "m.1", attempts=1, error="x"))
    assert running() == 1
    bar.handle(task(events.TaskStarted, "m", attempt=2))  # a retry is not another task
    assert running() == 1


def test_version_comes_from_the_installed_distribution() -> None:
    import asyncflow

    result = subprocess.run(
        [sys.executable, "-m", "asyncflow", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"asyncflow, version {asyncflow.__version__}"
