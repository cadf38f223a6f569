"""``asyncflow signal``, ``worker``, ``run --park`` and ``status`` of a waiting run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from asyncflow.cli import cli

FLOW = textwrap.dedent(
    """
    from asyncflow import AsyncFlow, Config, action, wait
    from asyncflow.providers import StorageFile

    CALLS = {log!r}

    @action
    def first():
        return 1

    @action
    def after(previous_context):
        with open(CALLS, "a") as handle:
            handle.write(f"after {{previous_context.storage}}\\n")
        return previous_context.storage

    flow = AsyncFlow(config=Config(storage=StorageFile({store!r})), workflow_id="approve-1")
    flow.task.add(step=first, key="first")
    flow.task.add(step=wait.signal("approval", timeout=86400), key="approval")
    flow.task.add(step=after, key="after")
    """
)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, str, Path]:
    log = tmp_path / "calls.log"
    store = tmp_path / "store"
    path = tmp_path / "approve.py"
    path.write_text(FLOW.format(log=str(log), store=str(store)))
    return path, f"file://{store}", log


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_park_signal_status_and_worker(setup: tuple[Path, str, Path]) -> None:
    path, url, log = setup
    code, out, err = invoke("run", f"{path}:flow", "--resume", "--park")
    assert code == 0, err
    assert "waiting" in out
    code, out, _ = invoke("status", "approve-1", "--storage", url)
    assert code == 0
    assert "key approval for signal 'approval', times out at" in out
    assert "due: " in out
    shown = json.loads(invoke("status", "approve-1", "--storage", url, "--format", "json")[1])
    assert shown["status"] == "waiting"
    assert shown["waiting"]["approval"]["signal"] == "approval"
    assert shown["tasks"][1]["status"] == "waiting"
    code, out, _ = invoke("worker", f"{path}:flow", "--once")
    assert (code, out.strip()) == (0, "resumed 0 run(s)")  # not due: no signal yet
    code, out, err = invoke(
        "signal", "approve-1", "approval", "--data", '{"ok": true}', "--storage", url
    )
    assert code == 0, err
    assert "sent signal approval to workflow approve-1" in out
    code, out, err = invoke("worker", f"{path}:flow", "--once")
    assert code == 0, err
    assert out.strip() == "resumed 1 run(s): approve-1"
    assert log.read_text() == "after {'ok': True}\n"
    assert (
        json.loads(invoke("status", "approve-1", "--storage", url, "--format", "json")[1])["status"]
        == "completed"
    )


def test_signal_refuses_bad_input(setup: tuple[Path, str, Path]) -> None:
    _, url, _ = setup
    code, _, err = invoke("signal", "wf", "go", "--data", "{not json", "--storage", url)
    assert code == 2
    assert "--data is not valid JSON" in err
    code, _, err = invoke("signal", "wf", "a/b", "--storage", url)
    assert code == 2
    assert "signal name" in err
    code, _, err = invoke("signal", "../wf", "go", "--storage", url)
    assert code == 2
    assert "workflow id" in err
    assert invoke("signal", "wf", "go", "--before-start", "--storage", url)[0] == 0
    code, _, err = invoke("signal", "wf", "go", "--before-start", "--storage", url)
    assert code == 1
    assert "already sent to workflow wf" in err
