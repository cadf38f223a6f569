"""The execution modes: how a run's tasks are ordered and awaited."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Iterator

import anyio.lowlevel

from asyncflow._core.context import Context
from asyncflow._core.graph import run_graph
from asyncflow._core.runner import Runner
from asyncflow._core.task import Task, TaskStatus
from asyncflow._kernel.concurrency import run_all

__all__ = ["MODES", "group_tasks", "run_chain", "run_groups", "run_parallel"]


async def run_chain(runner: Runner, tasks: list[Task]) -> None:
    """Each task gets the previous output; a failure stops the chain unless keep_going.

    A parked wait always stops it: what follows needs the wait's output.
    """
    empty = Context(workflow_id=runner.workflow_id)
    previous = runner.first_input
    digest = runner.first_digest
    for task in tasks:
        # The input digest is compared only for a step that receives the input.
        received = digest if task.step.receives_previous else None
        if runner.yield_due():
            await anyio.lowlevel.checkpoint()
        # A restore needs no coroutine: one less per step of a resume.
        if runner.restored(task, previous, received) or await runner.run(task, received):
            previous = task.current_context
            digest = task.digest
        elif not runner.keep_going or task.status is TaskStatus.WAITING:
            return
        else:
            previous = empty
            digest = None


def group_tasks(tasks: list[Task]) -> list[list[Task]]:
    groups: dict[str, list[Task]] = {}
    for task in tasks:
        groups.setdefault(task.group_name, []).append(task)
    return list(groups.values())


async def run_groups(runner: Runner, tasks: list[Task], max_concurrency: int | None) -> None:
    """Groups run concurrently, each one a chain."""
    await run_all([_bind_chain(runner, group) for group in group_tasks(tasks)])


def _bind_chain(runner: Runner, tasks: list[Task]) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        await run_chain(runner, tasks)

    return job


#: Unbounded parallel mode starts this many workers between turns of the loop.
_SPAWN_BATCH = 64


async def run_parallel(runner: Runner, tasks: list[Task], max_concurrency: int | None) -> None:
    """Every task on its own, each checkpointed on its own; at most ``max_concurrency`` at once."""
    pending = collections.deque(tasks)
    first, digest = runner.first_input, runner.first_digest

    async def worker() -> None:
        while pending and not runner.halted:
            task = pending.popleft()
            await runner.step(task, first, digest if task.step.receives_previous else None)

    if max_concurrency is not None:
        await run_all([worker] * min(max_concurrency, len(tasks)))
        return

    def workers() -> Iterator[Callable[[], Awaitable[None]]]:
        # Unbounded: a new worker at every turn of the loop while tasks are
        # left, so each task starts as soon as every earlier one has started
        # or suspended, yet the run holds a worker per task in flight rather
        # than a parked task per task of the flow (1 KiB instead of 4 each).
        for _ in tasks:  # never more workers than tasks
            if not pending or runner.halted:
                return
            yield worker

    await run_all(workers(), yield_every=_SPAWN_BATCH)


async def run_sequential(runner: Runner, tasks: list[Task], max_concurrency: int | None) -> None:
    groups = group_tasks(tasks)
    if len(groups) > 1:
        await run_groups(runner, tasks, max_concurrency)
    else:
        await run_chain(runner, tasks)


MODES: dict[str, Callable[[Runner, list[Task], int | None], Awaitable[None]]] = {
    "sequential": run_sequential,
    "sequential_group": run_groups,
    "background": run_sequential,
    "parallel": run_parallel,
    "graph": run_graph,
}
