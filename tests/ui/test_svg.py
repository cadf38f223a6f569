"""The server-drawn graph and timeline: shapes, colours, escaping."""

from __future__ import annotations

import re

from asyncflow.reading import RunState, TaskState
from asyncflow.ui._svg import COLLAPSE_OVER, MAX_ROWS, gantt_svg, graph_svg
from asyncflow.ui._views import edges


def run_of(tasks: list[TaskState], mode: str = "graph", status: str = "completed") -> RunState:
    return RunState("wf", None, status, mode, 100.0, 110.0, tuple(tasks))


def link(task: TaskState) -> str:
    return f"/t/{task.key}"


def test_fan_out_and_fan_in_follow_recorded_dependencies() -> None:
    run = run_of(
        [
            TaskState("extract", "extract", "completed", 0),
            TaskState("a", "a", "completed", 1, depends_on=("extract",)),
            TaskState("b", "b", "failed", 2, depends_on=("extract",)),
            TaskState("join", "join", "not run", 3, depends_on=("a", "b")),
        ]
    )
    assert edges(run) == [("extract", "a"), ("extract", "b"), ("a", "join"), ("b", "join")]
    svg = str(graph_svg(run, link))
    assert svg.count('class="edge"') == 4
    xs = {k: int(x) for k, x in re.findall(r'data-key="([^"]+)".*?<rect x="(\d+)"', svg)}
    assert xs["extract"] < xs["a"] == xs["b"] < xs["join"]
    assert re.search(r'data-key="b" data-status="failed">.*?fill="#f44336"', svg)


def test_modes_without_dependencies_draw_a_chain_or_nothing() -> None:
    tasks = [TaskState(str(i), f"s{i}", "completed", i) for i in range(3)]
    assert edges(run_of(tasks, "sequential")) == [("0", "1"), ("1", "2")]
    assert edges(run_of(tasks, "parallel")) == []


def test_many_map_children_fold_into_one_node_with_their_counts() -> None:
    children = [
        TaskState(
            f"fetch[{i}]",
            "fetch",
            "failed" if i == 3 else "completed",
            i + 1,
            depends_on=("pages",),
            parent="fetch",
        )
        for i in range(COLLAPSE_OVER + 8)
    ]
    run = run_of([TaskState("pages", "pages", "completed", 0), *children])
    svg = str(graph_svg(run, link))
    assert svg.count('class="node"') == 2
    assert "fetch[0..19]" in svg
    assert "19 completed" in svg
    assert "1 failed" in svg
    assert 'data-key="fetch[*]" data-status="failed"' in svg


def test_text_is_escaped_in_both_drawings() -> None:
    task = TaskState(
        "k", "<b>step</b>", "completed", 0, started_at=101.0, finished_at=102.0, attempts=3
    )
    run = run_of([task], "sequential")
    for svg in (str(graph_svg(run, link)), str(gantt_svg(run, link, now=120.0))):
        assert "<b>" not in svg
        assert "&lt;b&gt;step&lt;/b&gt;" in svg
    assert "\u00d73" in str(gantt_svg(run, link, now=120.0))


def test_restored_tasks_get_no_bar_on_the_timeline() -> None:
    run = run_of(
        [
            TaskState("0", "old", "skipped", 0, started_at=1.0, finished_at=2.0),
            TaskState("1", "new", "completed", 1, started_at=101.0, finished_at=109.0),
        ],
        "sequential",
    )
    svg = str(gantt_svg(run, link, now=120.0))
    assert svg.count("<rect") == 1
    assert "restored from checkpoint" in svg


def test_the_timeline_stops_at_max_rows() -> None:
    tasks = [
        TaskState(str(i), "s", "completed", i, started_at=101.0, finished_at=102.0)
        for i in range(MAX_ROWS + 5)
    ]
    svg = str(gantt_svg(run_of(tasks, "parallel"), link, now=120.0))
    assert svg.count('<g class="bar"') == MAX_ROWS


def test_a_task_depending_on_a_map_depends_on_each_child() -> None:
    run = run_of(
        [
            TaskState("fetch", "fetch", "completed", 0, kind="map"),
            TaskState("fetch.0", "fetch", "completed", 0, depends_on=("fetch",), parent="fetch"),
            TaskState("fetch.1", "fetch", "completed", 0, depends_on=("fetch",), parent="fetch"),
            TaskState("join", "join", "completed", 1, depends_on=("fetch",)),
        ]
    )
    assert edges(run) == [
        ("fetch", "fetch.0"),
        ("fetch", "fetch.1"),
        ("fetch.0", "join"),
        ("fetch.1", "join"),
    ]
