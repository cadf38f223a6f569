"""Tasks: a step placed in a flow, with its key, inputs and outcome."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from enum import Enum
from typing import Any

from asyncflow._core.action import Action, as_action
from asyncflow._core.context import Context
from asyncflow._core.errors import ConfigurationError
from asyncflow._core.ids import validate_id

__all__ = ["Task", "TaskBuilder", "TaskStatus", "TypeStatus"]


class TaskStatus(str, Enum):
    """Where a task stands. The values are Dotflow's strings."""

    NOT_STARTED = "Not started"
    IN_PROGRESS = "In progress"
    RETRY = "Retry"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


TypeStatus = TaskStatus
"""Dotflow's name for :class:`TaskStatus`, so ported code keeps working."""


class Task:
    """One step in one flow, and what happened to it in the latest run.

    ``task_id`` is the position in the flow; ``key`` names its checkpoint
    (``str(task_id)`` unless given). ``restored`` is true when the output came
    from a checkpoint instead of running the step.
    """

    __slots__ = (
        "_blank",
        "_empty",
        "attempts",
        "callback",
        "current_context",
        "digest",
        "duration",
        "error",
        "errors",
        "finished_at",
        "group_name",
        "initial_context",
        "key",
        "previous_context",
        "restored",
        "started_at",
        "status",
        "step",
        "task_id",
        "workflow_id",
    )

    def __init__(
        self,
        *,
        task_id: int,
        key: str,
        step: Action,
        initial_context: Context,
        group_name: str,
        callback: Callable[..., Any] | None,
        workflow_id: str,
        empty: Context | None = None,
    ) -> None:
        self.task_id = task_id
        self.key = key
        self.step = step
        self.initial_context = initial_context
        self.group_name = group_name
        self.callback = callback
        self.workflow_id = workflow_id
        # Contexts are frozen, so blanks built once serve every reset, and the
        # empty previous context is shared by the whole flow: every object a
        # task keeps is traversed by each full garbage collection of a run.
        self._blank = Context(task_id=task_id, workflow_id=workflow_id)
        self._empty = Context(workflow_id=workflow_id) if empty is None else empty
        self.reset()

    def reset(self) -> None:
        """Forget the outcome of the previous run before a new ``start``."""
        self.status = TaskStatus.NOT_STARTED
        self.current_context = self._blank
        self.previous_context = self._empty
        self.error: BaseException | None = None
        self.errors: list[BaseException] = []
        self.attempts = 0
        self.started_at: dt.datetime | None = None
        self.finished_at: dt.datetime | None = None
        self.duration = 0.0
        self.restored = False
        self.digest: str | None = None

    @property
    def name(self) -> str:
        return self.step.name

    def __repr__(self) -> str:
        return f"<Task {self.task_id} key={self.key!r} step={self.name} {self.status.value}>"


class TaskBuilder:
    """``flow.task``: where steps are added, in order."""

    def __init__(self, workflow_id: str) -> None:
        self.queue: list[Task] = []
        self.workflow_id = workflow_id
        self._keys: set[str] = set()
        self._empty = Context(workflow_id=workflow_id)
        self._no_input = Context()

    def add(
        self,
        step: object,
        callback: Callable[..., Any] | None = None,
        initial_context: Any = None,
        group_name: str = "default",
        key: str | None = None,
    ) -> TaskBuilder:
        """Append a step (or a list of steps, which share the other arguments).

        ``key`` pins the checkpoint name, so the step may move in the flow
        without losing its checkpoint; by default the key is the position.
        """
        if isinstance(step, (list, tuple)):
            if key is not None and len(step) > 1:
                raise ConfigurationError("key= cannot be shared by a list of steps")
            for inner in step:
                self.add(inner, callback, initial_context, group_name, key)
            return self
        if callback is not None and not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {callback!r}")
        if not isinstance(group_name, str) or not group_name:
            raise ConfigurationError(f"group_name must be a non-empty str, got {group_name!r}")
        task_id = len(self.queue)
        if key is None:
            key = str(task_id)
        else:
            validate_id(key, "task key")
        if len(self._keys) != len(self.queue):  # the queue was changed by hand
            self._keys = {task.key for task in self.queue}
        if key in self._keys:  # a set: adding N steps must not cost N² comparisons
            raise ConfigurationError(f"task key {key!r} is used twice in this flow")
        if isinstance(initial_context, Context):
            context = initial_context
        elif initial_context is None:
            context = self._no_input  # frozen: one serves every task without input
        else:
            context = Context(storage=initial_context)
        self.queue.append(
            Task(
                task_id=task_id,
                key=key,
                step=as_action(step),
                initial_context=context,
                group_name=group_name,
                callback=callback,
                workflow_id=self.workflow_id,
                empty=self._empty,
            )
        )
        self._keys.add(key)
        return self

    def count(self) -> int:
        return len(self.queue)

    def clear(self) -> None:
        self.queue.clear()
        self._keys.clear()
