"""Where a step's function runs: in this process (the default) or on an executor.

An executor only *runs* the step's callable. Everything that makes a run
durable stays with the runner in this process: reading checkpoints, the
lease, retries and their delays, the timeout's cancel scope, events and
committing the output. So every mode and ``resume=True`` behave exactly as
in-process; only where the user's code executes changes.

``Config(executor=None)`` (the default) keeps the in-process path: the runner
tests ``config.executor`` once per attempt and nothing else changes.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from asyncflow._core.context import Context

if TYPE_CHECKING:
    from asyncflow._core.action import Action
    from asyncflow._core.task import Task

__all__ = ["Executor", "call_executor", "run_class_step"]


@runtime_checkable
class Executor(Protocol):
    """What ``Config(executor=...)`` accepts.

    ``run`` calls ``func(**kwargs)`` somewhere else and returns its result
    (or raises its exception). ``is_async`` says ``func`` is a coroutine
    function, to be awaited on the remote side's event loop; otherwise it is a
    plain function (run it in a worker thread). ``name`` is the step's
    qualified name, for error messages. ``timeout`` is the step's timeout
    (informational: the runner enforces it by cancelling the ``await``; an
    executor must then cancel the remote work before re-raising the
    cancellation).
    """

    async def run(
        self,
        func: Callable[..., Any],
        kwargs: dict[str, Any],
        *,
        name: str,
        is_async: bool,
        timeout: float | None,
    ) -> Any: ...


async def call_executor(
    executor: Executor,
    task: Task,
    action: Action,
    kwargs: dict[str, Context],
    workflow_id: str,
) -> Any:
    """Run one attempt of ``task`` on ``executor`` (called by the runner)."""
    if not action.is_class:
        return await executor.run(
            action.func,
            dict(kwargs),
            name=action.name,
            is_async=action.is_async,
            timeout=action.timeout,
        )
    # A class step ships as ONE remote call: the instance and the outputs of
    # its methods never leave the worker until the step is done, exactly as
    # its checkpoint is one record for the whole class.
    return await executor.run(
        run_class_step,
        {
            "cls": action.func,
            # in source order, resolved here: a class pickled by value may
            # arrive with its attributes in another order
            "methods": action.methods(),
            "init_kwargs": dict(kwargs),
            "initial_context": task.initial_context,
            "previous_context": task.previous_context,
            "task_id": task.task_id,
            "workflow_id": workflow_id,
        },
        name=action.name,
        is_async=False,
        timeout=action.timeout,
    )


def run_class_step(
    *,
    cls: type,
    methods: list[Action],
    init_kwargs: dict[str, Any],
    initial_context: Context | None,
    previous_context: Context | None,
    task_id: int,
    workflow_id: str,
) -> list[Any]:
    """Run a class step where it was shipped: what the in-process runner does for one.

    Runs in a worker thread; an ``async def`` method runs to completion on
    a private event loop of that thread (``asyncio.run``).
    """
    instance = cls(**init_kwargs)
    previous = previous_context
    outputs: list[Any] = []
    for method in methods:
        method_kwargs: dict[str, Any] = {}
        if "initial_context" in method.params:
            method_kwargs["initial_context"] = initial_context
        if "previous_context" in method.params:
            method_kwargs["previous_context"] = previous
        output = method.func(instance, **method_kwargs)
        if inspect.iscoroutine(output):
            output = asyncio.run(_await(output))
        if isinstance(output, Context):
            output = output.storage
        outputs.append(output)
        previous = Context(storage=output, task_id=task_id, workflow_id=workflow_id)
    return outputs


async def _await(coro: Any) -> Any:
    return await coro
