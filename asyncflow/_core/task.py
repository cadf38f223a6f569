"""Tasks: a step placed in a flow, with its key, inputs and outcome."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from asyncflow._core.action import Action, as_action
from asyncflow._core.context import Context
from asyncflow._kernel.errors import ConfigurationError
from asyncflow._kernel.ids import MAX_ID_LENGTH, validate_id
from asyncflow._kernel.outcomes import Outcome

__all__ = ["ChildStep", "Task", "TaskBuilder", "TaskStatus", "TypeStatus", "derive_key"]

ChildStep = Callable[[object, "str | None"], "tuple[Action, str] | None"]
"""The step and key that run ``step`` as a child flow keyed ``key``; ``None`` if it is no flow."""

_UTC = dt.timezone.utc
_LOCALS = re.compile(r"^.*<locals>\.")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
#: Room left under the id length limit for a repeat suffix (``-12345``).
_MAX_BASE = MAX_ID_LENGTH - 8


def derive_key(name: str) -> str:
    """The default key of a step named ``name`` (its qualified name), as a valid id.

    A step defined inside a function is keyed by its name within that
    function (``build.<locals>.load`` is ``load``), so moving the code that
    builds the flow into another function does not re-key every step.
    ``<lambda>`` becomes ``_lambda_``; a name too long for an id keeps its
    head plus a hash of the whole, so two long names never share a key.
    """
    key = _UNSAFE.sub("_", _LOCALS.sub("", name)).lstrip(".-") or "step"
    if len(key) > _MAX_BASE:
        tail = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
        key = f"{key[: _MAX_BASE - 9]}-{tail}"
    return key


class TaskStatus(str, Enum):
    """Where a task stands. The values are Dotflow's strings."""

    NOT_STARTED = "Not started"
    IN_PROGRESS = "In progress"
    RETRY = "Retry"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    WAITING = "Waiting"

    # Dotflow's statuses are plain strings: f"{task.status}" prints "Completed".
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


TypeStatus = TaskStatus
"""Dotflow's name for :class:`TaskStatus`, so ported code keeps working."""


class Task:
    """One step in one flow, and what happened to it in the latest run.

    ``task_id`` is the position in the flow; ``key`` names its checkpoint
    (derived from the step's name unless given, see ``TaskBuilder.add``).
    ``restored`` is true when the output came from a checkpoint instead of
    running the step.
    """

    __slots__ = (
        "_blank",
        "_empty",
        "attempts",
        "callback",
        "children",
        "current_context",
        "depends_on",
        "digest",
        "duration",
        "error",
        "errors",
        "finished",
        "group_name",
        "initial_context",
        "key",
        "kind",
        "limit",
        "over",
        "previous_context",
        "restored",
        "skip_reason",
        "started",
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
        depends_on: tuple[str, ...] = (),
        kind: str = "step",
        over: str | None = None,
        limit: int | None = None,
    ) -> None:
        self.task_id = task_id
        self.key = key
        self.step = step
        self.initial_context = initial_context
        self.group_name = group_name
        self.callback = callback
        self.workflow_id = workflow_id
        #: Graph mode: the keys whose outputs this task waits for, in order.
        self.depends_on = depends_on
        #: ``step``, ``map`` (one child per item of ``over``'s output) or ``flow``.
        self.kind = kind
        self.over = over
        #: A map's own bound on children in flight (None: the run's).
        self.limit = limit
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
        #: Wall-clock seconds (``time.time()``) behind ``started_at``/``finished_at``.
        self.started: float | None = None
        self.finished: float | None = None
        self.duration = 0.0
        self.restored = False
        #: Why a task that never ran was skipped (graph mode: ``"upstream failed"``).
        self.skip_reason: str | None = None
        self.digest: str | None = None
        #: A map's number of children once ``over`` expanded (None before).
        self.children: int | None = None

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def retry_count(self) -> int:
        """Dotflow's name: ``attempts - 1`` (for a restored task, of the run that completed it)."""
        return max(0, self.attempts - 1)

    @property
    def outcome(self) -> Outcome:
        """What happened to this task in the run that just ended, in the words storage keeps
        (``run.json``, run summaries, ``asyncflow status``): ``skipped`` is restored,
        or never run for ``skip_reason`` (a dependency failed)."""
        if self.restored or self.skip_reason is not None:
            return "skipped"
        status = self.status
        if status is TaskStatus.COMPLETED:
            return "completed"
        if status is TaskStatus.FAILED:
            return "failed"
        if status is TaskStatus.WAITING:
            return "waiting"
        if status in (TaskStatus.CANCELLED, TaskStatus.IN_PROGRESS, TaskStatus.RETRY):
            return "cancelled"
        return "not run"

    # Kept as floats and turned into datetimes when read: building two
    # datetimes per step cost more than anything that reads them.
    @property
    def started_at(self) -> dt.datetime | None:
        """When the latest attempt of this run started (UTC), or ``None``."""
        return None if self.started is None else dt.datetime.fromtimestamp(self.started, _UTC)

    @started_at.setter
    def started_at(self, value: dt.datetime | None) -> None:
        self.started = None if value is None else value.timestamp()

    @property
    def finished_at(self) -> dt.datetime | None:
        """When this run finished with the task (UTC), or ``None``."""
        return None if self.finished is None else dt.datetime.fromtimestamp(self.finished, _UTC)

    @finished_at.setter
    def finished_at(self, value: dt.datetime | None) -> None:
        self.finished = None if value is None else value.timestamp()

    def __repr__(self) -> str:
        return f"<Task {self.task_id} key={self.key!r} step={self.name} {self.status.value}>"


class TaskBuilder:
    """``flow.task``: where steps are added, in order.

    A step is an ``@action`` (or any callable: a function, coroutine
    function, class, ``functools.partial`` or callable object) or another
    ``AsyncFlow``, which runs as a child workflow (see docs/graphs.md).
    """

    def __init__(self, workflow_id: str, *, child: ChildStep | None = None) -> None:
        self.queue: list[Task] = []
        self.workflow_id = workflow_id
        #: Turns an ``AsyncFlow`` added as a step into the step running it (``AsyncFlow``
        #: passes it in, so this module knows nothing of flows).
        self._child_step = child
        self._keys: set[str] = set()
        self._names: dict[str, int] = {}
        self._empty = Context(workflow_id=workflow_id)
        self._no_input = Context()

    def add(
        self,
        step: object,
        callback: Callable[..., Any] | None = None,
        initial_context: Any = None,
        group_name: str = "default",
        key: str | None = None,
        depends_on: str | Sequence[str] | None = None,
    ) -> TaskBuilder:
        """Append a step (or a list of steps, which share the other arguments).

        ``key`` pins the checkpoint name. By default the key is the step's
        qualified name (sanitized), with ``-2``, ``-3``... appended to the
        second, third... step of one name, so inserting, removing or moving
        other steps never moves a checkpoint.

        ``depends_on`` (``mode="graph"`` only) names the keys whose outputs
        this task waits for: one gives its output as ``previous_context``,
        several a dict ``{key: output}`` in this order.

        An ``AsyncFlow`` as ``step`` runs as workflow ``{this flow's id}.{key}``
        on this flow's storage, resumed with it; its last task's output is
        this step's output. Its key is ``key`` or its fixed ``workflow_id``.
        """
        if isinstance(step, (list, tuple)):
            if key is not None and len(step) > 1:
                raise ConfigurationError("key= cannot be shared by a list of steps")
            for inner in step:
                self.add(inner, callback, initial_context, group_name, key, depends_on)
            return self
        if callback is not None and not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {callback!r}")
        if not isinstance(group_name, str) or not group_name:
            raise ConfigurationError(f"group_name must be a non-empty str, got {group_name!r}")
        deps = _dependencies(depends_on)
        task_id = len(self.queue)
        kind = "step"
        child = self._child_step(step, key) if self._child_step is not None else None
        if child is not None:
            action, key = child
            validate_id(f"{self.workflow_id}.{key}", "child workflow id")
            kind = "flow"
        else:
            action = as_action(step)
        if len(self._keys) != len(self.queue):  # the queue was changed by hand
            self._keys = {task.key for task in self.queue}
        if key is None:
            base = derive_key(action.name)
            seen = self._names.get(base, 0) + 1
            self._names[base] = seen
            key = base if seen == 1 else f"{base}-{seen}"
            if key in self._keys:
                raise ConfigurationError(
                    f"the default key {key!r} of step {action.name} is already the key of"
                    f" another task; give one of them key=..."
                )
        else:
            validate_id(key, "task key")
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
                step=action,
                initial_context=context,
                group_name=group_name,
                callback=callback,
                workflow_id=self.workflow_id,
                empty=self._empty,
                depends_on=deps,
                kind=kind,
            )
        )
        self._keys.add(key)
        return self

    def map(
        self,
        step: object,
        *,
        over: str,
        key: str,
        max_concurrency: int | None = None,
        callback: Callable[..., Any] | None = None,
    ) -> TaskBuilder:
        """Dynamic fan-out (``mode="graph"``): run ``step`` once per item ``over`` returned.

        Child ``i`` has key ``{key}.{i}`` and its item as ``initial_context``;
        each is checkpointed on its own. The task ``key`` completes with the
        children's outputs in item order, which is what its dependents get.
        At most ``max_concurrency`` children run at once (default: the run's).
        """
        validate_id(over, "map over=")
        validate_id(key, "map key")
        if max_concurrency is not None and (
            type(max_concurrency) is not int or max_concurrency < 1
        ):
            raise ConfigurationError(
                f"map max_concurrency must be an int >= 1 or None, got {max_concurrency!r}"
            )
        if isinstance(step, (list, tuple)):
            raise ConfigurationError("task.map takes one step, not a list")
        if self._child_step is not None and self._child_step(step, key) is not None:
            raise ConfigurationError("task.map takes a step, not an AsyncFlow")
        self.add(step, callback=callback, key=key, depends_on=over)
        task = self.queue[-1]
        task.kind = "map"
        task.over = over
        task.limit = max_concurrency
        return self

    def copy_from(self, other: TaskBuilder) -> None:
        """Add every task of ``other`` with its key and shape (a flow rebuilt elsewhere)."""
        for task in other.queue:
            if task.kind == "map":
                self.map(
                    task.step,
                    over=task.over or "",
                    key=task.key,
                    max_concurrency=task.limit,
                    callback=task.callback,
                )
                continue
            self.add(
                step=task.step,
                callback=task.callback,
                initial_context=task.initial_context,
                group_name=task.group_name,
                key=task.key,
                depends_on=task.depends_on or None,
            )
            self.queue[-1].kind = task.kind  # a child flow's step stays one

    def count(self) -> int:
        return len(self.queue)

    def clear(self) -> None:
        self.queue.clear()
        self._keys.clear()
        self._names.clear()


def _dependencies(depends_on: object) -> tuple[str, ...]:
    if depends_on is None:
        return ()
    names = (depends_on,) if isinstance(depends_on, str) else depends_on
    if not isinstance(names, (list, tuple)):
        raise ConfigurationError(
            f"depends_on must be a key or a list of keys, got {type(depends_on).__name__}"
        )
    for name in names:
        validate_id(name, "depends_on key")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"depends_on lists a key twice: {list(names)!r}")
    return tuple(names)
