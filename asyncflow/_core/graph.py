"""``mode="graph"``: tasks run as soon as their dependencies complete; map fan-out.

The graph is checked before anything runs (unknown keys, cycles, graph-only
features in another mode are ``ConfigurationError``). The scheduler keeps
three outcomes of a task apart: COMPLETED releases its dependents; FAILED
skips them, and theirs, with the reason ``"upstream failed"`` (they never
run, whatever ``keep_going`` says: a step given ``None`` for a failed input
only fails again, further from the cause) and halts the run unless
``keep_going``; anything else (a cancelled task, or a wait that parked)
simply never releases them.

A map tries every child, even after one failed (the items are independent,
and a user fixing bad items wants them all in one run), then fails naming
how many failed and the first; a child that parks at a durable wait parks
the map.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import anyio

from asyncflow import events
from asyncflow._core.context import Context
from asyncflow._core.records import load_records
from asyncflow._core.runner import Runner, call_callback
from asyncflow._core.task import Task, TaskStatus
from asyncflow._kernel.checkpoint import encode_output
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.errors import (
    CheckpointMismatch,
    ConfigurationError,
    SerializationError,
    TaskFailed,
)
from asyncflow._kernel.layout import task_storage_key
from asyncflow.reading import child_key, map_child

__all__ = ["UPSTREAM_FAILED", "check_graph", "run_graph"]

#: Why a task of a graph whose dependency failed never ran.
UPSTREAM_FAILED = "upstream failed"

#: Unbounded maps start this many children between turns of the loop.
_SPAWN_BATCH = 64


def check_graph(tasks: Sequence[Task], mode: str) -> None:
    """Refuse a flow whose graph cannot run, before anything runs."""
    if mode != "graph":
        for task in tasks:
            if task.kind == "map":
                raise ConfigurationError(
                    f"task {task.key!r} is a task.map, which needs mode='graph'"
                    f" (the flow was started with mode={mode!r})"
                )
            if task.depends_on:
                raise ConfigurationError(
                    f"task {task.key!r} has depends_on, which needs mode='graph'"
                    f" (the flow was started with mode={mode!r})"
                )
        return
    keys = {task.key: task for task in tasks}
    for task in tasks:
        for dep in task.depends_on:
            if dep not in keys:
                known = ", ".join(sorted(keys)[:20])
                raise ConfigurationError(
                    f"task {task.key!r} depends on {dep!r}, which is not a key of this flow"
                    f" (keys: {known})"
                )
        if task.kind == "map":
            for other in keys:
                if map_child(other, (task.key,)) is not None:
                    raise ConfigurationError(
                        f"key {other!r} collides with a child of task.map {task.key!r}"
                    )
    cycle = _find_cycle(tasks)
    if cycle:
        raise ConfigurationError(f"the flow's dependencies form a cycle: {' -> '.join(cycle)}")


def _find_cycle(tasks: Sequence[Task]) -> list[str]:
    """A cycle as a list of keys (first repeated at the end), or [] if there is none."""
    deps = {task.key: task.depends_on for task in tasks}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in deps:
        if root in state:
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(deps[root]))]
        state[root] = 1
        path.append(root)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(deps[child])))
    return []


def _combine(parts: Sequence[str]) -> str:
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


class _Graph:
    def __init__(self, runner: Runner, tasks: Sequence[Task], limit: int | None) -> None:
        self.runner = runner
        self.limit = limit
        self.by_key = {task.key: task for task in tasks}
        self.dependents: dict[str, list[Task]] = collections.defaultdict(list)
        self.waiting: dict[str, int] = {}
        for task in tasks:
            self.waiting[task.key] = len(task.depends_on)
            for dep in task.depends_on:
                self.dependents[dep].append(task)
        self.ready = collections.deque(task for task in tasks if not task.depends_on)
        self.empty = Context(workflow_id=runner.workflow_id)

    async def run(self) -> None:
        runner = self.runner
        failure: list[BaseException] = []
        running = 0

        def launch() -> None:
            nonlocal running
            while self.ready and not runner.halted and (self.limit is None or running < self.limit):
                running += 1
                group.start_soon(guarded, self.ready.popleft())

        async def guarded(task: Task) -> None:
            nonlocal running
            try:
                await self.one(task)
            except Exception as exc:
                if not failure:
                    failure.append(exc)
                group.cancel_scope.cancel()
                return
            finally:
                running -= 1
            self.settle(task)
            launch()

        async with anyio.create_task_group() as group:
            launch()
        if failure:
            raise failure[0]

    def settle(self, task: Task) -> None:
        status = task.status
        if status is TaskStatus.COMPLETED:
            for dependent in self.dependents.get(task.key, ()):
                self.waiting[dependent.key] -= 1
                if self.waiting[dependent.key] == 0:
                    self.ready.append(dependent)
        elif status is TaskStatus.FAILED:
            self.skip_dependents(task)

    def skip_dependents(self, failed: Task) -> None:
        """Every task downstream of ``failed`` ends skipped, "upstream failed"; none runs."""
        runner = self.runner
        pending = list(self.dependents.get(failed.key, ()))
        while pending:
            task = pending.pop()
            if task.skip_reason is not None or task.status is not TaskStatus.NOT_STARTED:
                continue
            task.skip_reason = UPSTREAM_FAILED
            self.waiting[task.key] = -1  # never ready, whatever else completes
            runner.finished.append(task)
            if runner.bus.subscribers:
                runner.bus.task_event(
                    events.TaskSkipped, runner.workflow_id, task, reason=UPSTREAM_FAILED
                )
            pending.extend(self.dependents.get(task.key, ()))

    def inputs(self, task: Task) -> tuple[Context, str | None]:
        """What ``task`` receives: one dependency's output, or ``{key: output}`` of several."""
        deps = task.depends_on
        receives = task.step.receives_previous
        if not deps:
            runner = self.runner
            return runner.first_input, runner.first_digest if receives else None
        done = [self.by_key[dep] for dep in deps]
        done = [dep for dep in done if dep.status is TaskStatus.COMPLETED]
        if len(deps) == 1:
            if not done:
                return self.empty, None
            return done[0].current_context, done[0].digest if receives else None
        storage = {dep.key: dep.current_context.storage for dep in done}
        digest = _combine([f"{dep.key}={dep.digest}" for dep in done]) if receives else None
        return Context(storage=storage, workflow_id=self.runner.workflow_id), digest

    async def one(self, task: Task) -> None:
        if task.kind == "map":
            await self.map(task)
            self.runner.finished.append(task)
            ended = task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED)
            if ended and not task.restored and task.callback is not None:
                await call_callback(task.callback, task=task)  # as a step's: once it ran
            return
        previous, digest = self.inputs(task)
        await self.runner.step(task, previous, digest)

    async def map(self, task: Task) -> None:
        runner = self.runner
        over = self.by_key[task.over or ""]
        task.previous_context = over.current_context
        if over.status is not TaskStatus.COMPLETED:
            self.fail(task, TaskFailed(f"map {task.key}: its over task {over.key!r} failed"))
            return
        items = over.current_context.storage
        if not isinstance(items, (list, tuple)):
            self.fail(
                task,
                TaskFailed(
                    f"map {task.key}: task {over.key!r} returned"
                    f" {type(items).__name__}, not a list to map over"
                ),
            )
            return
        digest = over.digest
        task.children = len(items)
        record = runner.records.get(task.key)
        if record is not None:
            if record.step != task.name:
                raise CheckpointMismatch(
                    f"checkpoint {task_storage_key(runner.workflow_id, task.key)} was written by"
                    f" step {record.step!r} but the step at key {task.key!r} is now"
                    f" {task.name!r}"
                )
            if record.input_digest == digest:
                runner.restore(task, record)
                return
        await self.children(task, items, digest)

    async def children(self, task: Task, items: Sequence[Any], digest: str | None) -> None:
        runner = self.runner
        count = len(items)
        keys = [child_key(task.key, index) for index in range(count)]
        runner.records.update(
            await load_records(
                runner.storage,
                runner.workflow_id,
                keys,
                serializers={runner.serializer.name: runner.serializer},
                signing_key=runner.config.signing_key,
                concurrency=runner.config.read_concurrency,
                snapshot=runner.snapshot,
            )
        )
        del keys
        outputs: list[Any] = [None] * count
        failed: list[Task] = []
        parked: list[Task] = []
        taken = 0  # children handed to a worker so far
        receives = "initial_context" in task.step.params or task.step.is_class
        started = time.time()
        clock = time.perf_counter()
        task.status = TaskStatus.IN_PROGRESS
        if runner.bus.subscribers:
            runner.bus.task_event(events.TaskStarted, runner.workflow_id, task, attempt=1)

        async def worker() -> None:
            nonlocal taken
            while taken < count:  # every child is tried, even once the run halted
                index = taken
                taken += 1
                key = child_key(task.key, index)
                child = Task(
                    task_id=index,
                    key=key,
                    step=task.step,
                    initial_context=Context(storage=items[index]),
                    group_name=task.group_name,
                    callback=None,
                    workflow_id=runner.workflow_id,
                    empty=self.empty,
                )
                child_digest = self.item_digest(key, items[index], digest, index, receives)
                ok = await runner.step(child, self.empty, child_digest)
                runner.records.pop(key, None)
                if ok:
                    outputs[index] = child.current_context.storage
                elif child.status is TaskStatus.WAITING:
                    parked.append(child)
                else:
                    failed.append(child)

        limit = task.limit or self.limit
        if limit is not None:
            await run_all([worker] * min(limit, count))
        else:

            def workers() -> Iterator[Callable[[], Awaitable[None]]]:
                for _ in range(count):  # never more workers than children left
                    if taken >= count:
                        return
                    yield worker

            await run_all(workers(), yield_every=_SPAWN_BATCH)
        if failed:
            first = min(failed, key=lambda child: child.task_id)
            error = TaskFailed(
                f"map {task.key}: {len(failed)} of {count} children failed;"
                f" first: {first.key}: {first.error!r}",
                key=task.key,
                step=task.name,
            )
            self.fail(task, error, cause=first.error)
            return
        if parked:  # the children at a wait are in ``runner.parked``: the run parks
            task.status = TaskStatus.WAITING
            return
        await self.complete(task, outputs, digest, started, clock)

    def item_digest(
        self, key: str, item: Any, over: str | None, index: int, receives: bool
    ) -> str | None:
        """A child's input digest: its own item's, so only children whose item changed re-run.

        A record made before (its digest was the over task's output and the
        index) holds for the same item too: that output and index are the item.
        """
        if not receives:
            return None
        runner = self.runner
        record = runner.records.get(key)
        legacy = _combine([f"{over}", str(index)])
        if record is not None and record.input_digest == legacy:
            return legacy
        return encode_output(runner.serializer, item, key).digest

    async def complete(
        self, task: Task, output: list[Any], digest: str | None, started: float, clock: float
    ) -> None:
        """Commit a map's record: its children's outputs in item order."""
        runner = self.runner
        action = task.step
        try:
            encoded = await runner.encode_output(task, output, action.name)
        except SerializationError as exc:
            self.fail(task, exc)
            return
        task.attempts = 1
        data = runner.encoder.encode(
            key=task.key,
            task_id=task.task_id,
            step=action.name,
            module=action.module,
            attempts=1,
            started_at=started,
            finished_at=time.time(),
            input_digest=digest,
            code_hash=action.code_hash,
            output=encoded,
        )
        await runner.committer.commit(task, f"{runner.tasks_prefix}{task.key}.json", data)
        task.digest = encoded.digest
        task.current_context = Context(
            storage=output, task_id=task.task_id, workflow_id=runner.workflow_id, key=task.key
        )
        task.status = TaskStatus.COMPLETED
        task.duration = time.perf_counter() - clock
        if runner.bus.subscribers:
            runner.bus.task_event(
                events.TaskCompleted,
                runner.workflow_id,
                task,
                attempts=1,
                duration=task.duration,
            )

    def fail(self, task: Task, error: BaseException, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        self.runner.fail(task, error)
        if not self.runner.keep_going:
            self.runner.halted = True


async def run_graph(runner: Runner, tasks: list[Task], max_concurrency: int | None) -> None:
    """Each task as soon as its dependencies completed; at most ``max_concurrency`` at once."""
    await _Graph(runner, tasks, max_concurrency).run()
