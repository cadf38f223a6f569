"""Calling a step's code: retries, timeouts, worker threads, executors, class steps.

What runs the user's function is kept apart from what restores and commits
a task (``runner.py``): here a step's exception is caught and retried, a
sync step goes to a thread whose straggler never overlaps the next attempt,
and an executor or a class step's methods are called in turn.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from asyncflow import events
from asyncflow._core.action import Action
from asyncflow._core.bus import EventBus
from asyncflow._core.context import Context
from asyncflow._core.failures import carry_fields
from asyncflow._core.task import Task, TaskStatus
from asyncflow._core.waits import WaitParked
from asyncflow._kernel.errors import TaskTimeout

if TYPE_CHECKING:
    from asyncflow._core.executor import Executor

__all__ = ["run_attempts"]

logger = logging.getLogger("asyncflow")


async def _in_thread(func: Callable[[], Any], stragglers: list[threading.Event] | None) -> Any:
    """Run a sync step in a worker thread.

    Without a timeout (``stragglers`` is None) cancellation waits for the
    thread. With one, a timed-out call is abandoned so the flow moves on; its
    thread cannot be killed, so it is remembered in ``stragglers`` and the
    next attempt of the same step waits for it: attempts never overlap.
    """
    if stragglers is None:
        return await anyio.to_thread.run_sync(func)
    done = threading.Event()

    def tracked() -> Any:
        try:
            return func()
        finally:
            done.set()

    stragglers.append(done)
    return await anyio.to_thread.run_sync(tracked, abandon_on_cancel=True)


async def _join(stragglers: list[threading.Event]) -> None:
    """Wait for abandoned threads of earlier attempts to finish."""
    while stragglers:
        done = stragglers[-1]
        if not done.is_set():
            await anyio.to_thread.run_sync(done.wait, abandon_on_cancel=True)
        stragglers.pop()


async def run_attempts(
    task: Task,
    action: Action,
    kwargs: dict[str, Context],
    *,
    bus: EventBus,
    workflow_id: str,
    executor: Executor | None,
    fail: Callable[[Task, BaseException, float | None], None],
) -> tuple[bool, Any]:
    """Call ``task``'s step up to ``action.attempts`` times; ``(True, output)`` once one returns.

    After the last failed attempt ``fail`` marks the task FAILED and this
    returns ``(False, None)``: a step's exception never escapes it.
    """
    stragglers: list[threading.Event] = []
    # The common case, awaited here: two fewer coroutine frames per step.
    fast = action.is_async and action.timeout is None and executor is None
    for attempt in range(1, action.attempts + 1):
        if stragglers:
            await _join(stragglers)
        task.attempts = attempt
        if bus.subscribers:
            bus.task_event(events.TaskStarted, workflow_id, task, attempt=attempt)
        try:
            if fast:
                output = await action.func(**kwargs)
            else:
                output = await _attempt(task, action, kwargs, stragglers, executor, workflow_id)
        except WaitParked:  # a child flow parked: the step parks, it did not fail
            raise
        except Exception as exc:
            task.errors.append(exc)
            if attempt == action.attempts:
                fail(task, exc, None)
                return False, None
            carry_fields(exc, attempt)
            delay = action.delay(attempt)
            task.status = TaskStatus.RETRY
            logger.warning(
                "%s: step %s attempt %d/%d failed (%r); retrying in %.3gs",
                workflow_id,
                task.name,
                attempt,
                action.attempts,
                exc,
                delay,
            )
            bus.task_event(
                events.TaskRetrying,
                workflow_id,
                task,
                attempt=attempt,
                error=repr(exc),
                delay=delay,
            )
            if delay > 0:
                await anyio.sleep(delay)
            task.status = TaskStatus.IN_PROGRESS
        else:
            if isinstance(output, Context):
                output = output.storage
            return True, output
    raise AssertionError("unreachable")  # pragma: no cover


async def _attempt(
    task: Task,
    action: Action,
    kwargs: dict[str, Context],
    stragglers: list[threading.Event],
    executor: Executor | None,
    workflow_id: str,
) -> Any:
    if action.timeout is None:
        return await _invoke(task, action, kwargs, None, executor, workflow_id)
    with anyio.CancelScope(deadline=anyio.current_time() + action.timeout):
        return await _invoke(task, action, kwargs, stragglers, executor, workflow_id)
    raise TaskTimeout(
        f"step {action.name} (key {task.key}) timed out after {action.timeout:g}s",
        key=task.key,
        step=action.name,
    )


async def _invoke(
    task: Task,
    action: Action,
    kwargs: dict[str, Context],
    stragglers: list[threading.Event] | None,
    executor: Executor | None,
    workflow_id: str,
) -> Any:
    if executor is not None and task.kind != "flow":  # a child flow runs here, its steps there
        from asyncflow._core.executor import call_executor

        return await call_executor(executor, task, action, kwargs, workflow_id)
    if action.is_async:
        return await action.func(**kwargs)
    if action.is_class:
        return await _invoke_class(task, action, kwargs, stragglers, workflow_id)
    return await _in_thread(functools.partial(action.func, **kwargs), stragglers)


async def _invoke_class(
    task: Task,
    action: Action,
    kwargs: dict[str, Context],
    stragglers: list[threading.Event] | None,
    workflow_id: str,
) -> list[Any]:
    instance = await _in_thread(functools.partial(action.func, **kwargs), stragglers)
    previous = task.previous_context
    outputs: list[Any] = []
    for method in action.methods():
        method_kwargs: dict[str, Context] = {}
        if "initial_context" in method.params:
            method_kwargs["initial_context"] = task.initial_context
        if "previous_context" in method.params:
            method_kwargs["previous_context"] = previous
        if method.is_async:
            output = await method.func(instance, **method_kwargs)
        else:
            output = await _in_thread(
                functools.partial(method.func, instance, **method_kwargs), stragglers
            )
        if isinstance(output, Context):
            output = output.storage
        outputs.append(output)
        previous = Context(storage=output, task_id=task.task_id, workflow_id=workflow_id)
    return outputs
