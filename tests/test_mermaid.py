"""Mermaid rendering: the seed's two diagrams byte for byte, and the edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from asyncflow import AsyncFlow, action
from asyncflow.mermaid import (
    GraphNode,
    flow_mermaid,
    node_id,
    render_graph_mermaid,
    render_mermaid,
)

SEED_FAILED = """\
graph LR
A[step_one] -->|completed| B[step_two]
B -->|completed| C[step_three]
C -->|failed| D((stop))
style A fill:#4caf50,color:#fff
style B fill:#4caf50,color:#fff
style C fill:#f44336,color:#fff
"""

SEED_RESUMED = """\
graph LR
A[step_one] -->|skipped| B[step_two]
B -->|skipped| C[step_three]
C -->|completed| D((done))
style A fill:#9e9e9e,color:#fff
style B fill:#9e9e9e,color:#fff
style C fill:#4caf50,color:#fff
"""

STEPS = ("step_one", "step_two", "step_three")


def test_the_seeds_failed_run() -> None:
    outcomes = ("completed", "completed", "failed")
    assert render_mermaid(zip(STEPS, outcomes, strict=True), "failed") == SEED_FAILED


def test_the_seeds_resumed_run() -> None:
    outcomes = ("skipped", "skipped", "completed")
    assert render_mermaid(zip(STEPS, outcomes, strict=True), "completed") == SEED_RESUMED


def test_not_run_tasks_are_grey_and_label_their_edge() -> None:
    text = render_mermaid([("a", "completed"), ("b", "failed"), ("c", "not run")], "failed")
    assert text.splitlines() == [
        "graph LR",
        "A[a] -->|completed| B[b]",
        "B -->|failed| C[c]",
        "C -->|not run| D((stop))",
        "style A fill:#4caf50,color:#fff",
        "style B fill:#f44336,color:#fff",
        "style C fill:#9e9e9e,color:#fff",
    ]


def test_empty_flow_and_a_single_task() -> None:
    assert render_mermaid([], "completed") == "graph LR\nA((done))\n"
    assert render_mermaid([("only", "completed")], "completed") == (
        "graph LR\nA[only] -->|completed| B((done))\nstyle A fill:#4caf50,color:#fff\n"
    )


@pytest.mark.parametrize(
    ("index", "name"), [(0, "A"), (25, "Z"), (26, "AA"), (27, "AB"), (701, "ZZ"), (702, "AAA")]
)
def test_node_ids_go_past_z(index: int, name: str) -> None:
    assert node_id(index) == name


def test_names_mermaid_would_misread_are_quoted() -> None:
    text = render_mermaid([("outer.<locals>.f", "completed"), ('say "hi"', "failed")], "failed")
    assert 'A["outer.<locals>.f"] -->|completed| B["say #quot;hi#quot;"]' in text


@action
def step_one() -> int:
    return 1


@action
def step_two() -> None:
    raise RuntimeError("no")


@action
def step_three() -> int:
    return 3


def test_a_flow_in_this_process() -> None:
    flow = AsyncFlow()
    flow.task.add(step=[step_one, step_two, step_three])
    anyio.run(flow.start)
    assert flow_mermaid(flow).splitlines()[1:4] == [
        "A[step_one] -->|completed| B[step_two]",
        "B -->|failed| C[step_three]",
        "C -->|not run| D((stop))",
    ]


DIAMOND_FAILED = """\
graph LR
A[top]
B[left]
C[right]
D[bottom]
E[["pages [3]"]]
A -->|completed| B
A -->|completed| C
C -->|completed| D
B -->|failed| D
A -->|completed| E
D -->|skipped| F((stop))
E -->|completed| F
style A fill:#4caf50,color:#fff
style B fill:#f44336,color:#fff
style C fill:#4caf50,color:#fff
style D fill:#9e9e9e,color:#fff
style E fill:#4caf50,color:#fff
"""


def graph_flow(root: str, fail: bool) -> AsyncFlow:
    from asyncflow import Config, Context
    from asyncflow.providers import StorageFile

    @action
    async def top() -> list[int]:
        return [1, 2, 3]

    @action
    async def left(previous_context: Context) -> int:
        if fail:
            raise RuntimeError("left is down")
        return 1

    @action
    async def right(previous_context: Context) -> int:
        return 2

    @action
    async def bottom(previous_context: Context) -> int:
        return 3

    @action
    async def page(initial_context: Context) -> int:
        return int(initial_context.storage)

    flow = AsyncFlow(config=Config(storage=StorageFile(root)), workflow_id="diamond")
    flow.task.add(step=top)
    flow.task.add(step=left, depends_on="top")
    flow.task.add(step=right, depends_on="top")
    flow.task.add(step=bottom, depends_on=["right", "left"])
    flow.task.map(page, over="top", key="pages")
    return flow


def test_status_draws_a_graph_run_as_a_graph(tmp_path: Path) -> None:
    """`asyncflow status --format mermaid` (and --format json) read the shape from run.json."""
    from click.testing import CliRunner

    from asyncflow.cli import cli

    async def scenario() -> AsyncFlow:
        flow = graph_flow(str(tmp_path), fail=True)
        await flow.start(mode="graph", resume=True, keep_going=False)
        return flow

    flow = anyio.run(scenario)
    assert flow_mermaid(flow) == DIAMOND_FAILED
    url = f"file://{tmp_path}"
    result = CliRunner().invoke(cli, ["status", "diamond", "--storage", url, "--format", "mermaid"])
    assert result.exit_code == 0, result.output
    assert result.stdout == DIAMOND_FAILED
    result = CliRunner().invoke(cli, ["status", "diamond", "--storage", url, "--format", "json"])
    tasks = {t["key"]: t for t in json.loads(result.stdout)["tasks"]}
    assert tasks["bottom"]["depends_on"] == ["right", "left"]
    assert tasks["pages"]["kind"] == "map"
    assert tasks["pages"]["over"] == "top"
    assert tasks["pages"]["children"] == 3
    assert json.loads(result.stdout)["extra_records"] == []  # map children are not strays


def test_parallel_runs_fan_out_instead_of_a_chain() -> None:
    nodes = [GraphNode("a", "completed"), GraphNode("b", "failed")]
    assert render_graph_mermaid(nodes, "failed").splitlines()[3:5] == [
        "A -->|completed| C((stop))",
        "B -->|failed| C",
    ]
