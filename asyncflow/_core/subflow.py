"""Child flows: an ``AsyncFlow`` added as a step of another.

The child runs as workflow ``{parent_id}.{key}`` on the parent's storage, with
its own checkpoints, lease and ``run.json``; it is resumed when the parent is
(``resume`` follows the parent's). Its input, the parent step's input, is
what each of its first tasks receives (the first of a chain, a graph's tasks
without dependencies); its output, the parent step's output, is the output
of the child's last task. The parent's run reaches the step
through a context variable, so that ``flow.config`` may change (the CLI's
``--storage``) between adding the child and starting the parent.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncflow._kernel.errors import ConfigurationError
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest

if TYPE_CHECKING:
    from asyncflow._core.config import Config
    from asyncflow._core.context import Context
    from asyncflow._core.flow import AsyncFlow
    from asyncflow._kernel.storage import Storage

__all__ = ["PARENT", "ChildFlow", "Parent", "child_workflows"]


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

    async def __call__(self, previous_context: Context) -> Any:
        parent = PARENT.get()
        if parent is None:
            raise ConfigurationError(f"child flow {self.key!r} runs only as a step of a flow")
        run = self.flow.copy(
            f"{parent.workflow_id}.{self.key}", config=parent.config, input=previous_context
        )
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


async def child_workflows(storage: Storage, workflow_id: str) -> list[str]:
    """Every child flow under ``workflow_id``, depth first, as its ``run.json`` names them.

    Only a key the parent's latest run recorded as kind ``flow`` counts, and
    only when that child has a ``run.json`` of its own: ``nightly.v2`` next to
    ``nightly`` is another workflow, never a child.
    """
    found: list[str] = []
    pending = [workflow_id]
    while pending:
        current = pending.pop()
        blob = await storage.read(manifest_key(current))
        if blob is None:
            continue
        manifest = Manifest.decode(blob.data, manifest_key(current))
        for key, kind in manifest.kinds.items():
            child = f"{current}.{key}"
            if kind == "flow" and await storage.read(manifest_key(child)) is not None:
                found.append(child)
                pending.append(child)
    return found
