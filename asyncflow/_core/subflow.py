"""Child flows: an ``AsyncFlow`` added as a step of another.

The child runs as workflow ``{parent_id}.{key}`` on the parent's storage, with
its own checkpoints, lease and ``run.json``; it is resumed when the parent is
(``resume`` follows the parent's) and its output, the parent step's output,
is the output of the child's last task. The parent's run reaches the step
through a context variable, so that ``flow.config`` may change (the CLI's
``--storage``) between adding the child and starting the parent.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncflow._core.errors import ConfigurationError

if TYPE_CHECKING:
    from asyncflow._core.config import Config
    from asyncflow._core.flow import AsyncFlow

__all__ = ["PARENT", "ChildFlow", "Parent"]


@dataclass(frozen=True, slots=True)
class Parent:
    """What a child flow inherits from the run it is a step of."""

    config: Config
    workflow_id: str
    resume: bool
    max_concurrency: int | None


PARENT: contextvars.ContextVar[Parent | None] = contextvars.ContextVar(
    "asyncflow_parent", default=None
)


class ChildFlow:
    """The step that runs ``flow`` as child ``key`` of whichever run calls it."""

    def __init__(self, flow: AsyncFlow, key: str) -> None:
        self.flow = flow
        self.key = key
        #: The child's latest run (an ``AsyncFlow`` on the parent's storage).
        self.last: AsyncFlow | None = None

    async def __call__(self) -> Any:
        from asyncflow._core.flow import AsyncFlow

        parent = PARENT.get()
        if parent is None:
            raise ConfigurationError(f"child flow {self.key!r} runs only as a step of a flow")
        run = AsyncFlow(config=parent.config, workflow_id=f"{parent.workflow_id}.{self.key}")
        run.task.copy_from(self.flow.task)
        self.last = run
        graph = any(task.depends_on for task in run.task.queue)
        await run.start(
            mode="graph" if graph else "sequential",
            resume=parent.resume,
            raise_on_failure=True,
            max_concurrency=parent.max_concurrency,
        )
        outputs = run.result_storage()
        return outputs[-1] if outputs else None
