"""Child flows: an ``AsyncFlow`` added as a step of another.

The child runs as workflow ``{parent_id}.{key}`` on the parent's storage, with
its own checkpoints, lease and ``run.json`` (which names its parent); it is
resumed when the parent is (``resume`` and ``on_wait`` follow the parent's:
a child that parks at a durable wait parks the parent's step, and the
parent's ``run.json`` records the child's waits). An id ``{parent_id}.{key}``
that belongs to an unrelated workflow is refused before the parent writes
anything (``check_children``). Its input, the parent step's input, is
what each of its first tasks receives (the first of a chain, a graph's tasks
without dependencies); its output, the parent step's output, is the output
of the child's last task. The parent's run reaches the step
through a context variable, so that ``flow.config`` may change (the CLI's
``--storage``) between adding the child and starting the parent.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from asyncflow._core.waits import WaitParked, WaitSpec
from asyncflow._kernel.errors import ConfigurationError
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest

if TYPE_CHECKING:
    from asyncflow._core.config import Config
    from asyncflow._core.context import Context
    from asyncflow._core.flow import AsyncFlow
    from asyncflow._core.task import Task
    from asyncflow._kernel.storage import Storage

__all__ = ["PARENT", "ChildFlow", "Parent", "check_children", "child_workflows"]


@dataclass(frozen=True, slots=True)
class Parent:
    """What a child flow inherits from the run it is a step of."""

    config: Config
    workflow_id: str
    resume: bool
    max_concurrency: int | None
    on_wait: str = "block"


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
        run._parent = parent.workflow_id
        self.last = run
        await run.start(
            resume=parent.resume,
            raise_on_failure=True,
            max_concurrency=parent.max_concurrency,
            on_wait="park" if parent.on_wait == "park" else "block",
        )
        if run.status == "waiting":
            raise WaitParked(None, inner=await _child_waits(run.config.storage, run.workflow_id))
        outputs = run.result_storage()
        return outputs[-1] if outputs else None


async def _child_waits(storage: Storage, child_id: str) -> dict[str, WaitSpec]:
    """What the parked child waits for, as its ``run.json`` says, each naming the child."""
    where = manifest_key(child_id)
    blob = await storage.read(where)
    manifest = Manifest.decode(blob.data, where) if blob is not None else None
    if manifest is None or manifest.status != "waiting":
        raise ConfigurationError(f"child flow {child_id} parked, but its run.json says otherwise")
    found = {}
    for key, raw in manifest.waiting.items():
        spec = WaitSpec.from_json(raw, f"{where} waiting[{key}]")
        found[key] = spec if spec.workflow is not None else replace(spec, workflow=child_id)
    return found


async def check_children(storage: Storage, workflow_id: str, tasks: Sequence[Task]) -> None:
    """Refuse a child flow whose id belongs to an unrelated workflow, at any depth.

    ``{parent}.{key}`` is this parent's child when its ``run.json`` names
    the parent, or (written before children named theirs) when the parent's
    own ``run.json`` recorded ``key`` as a child flow. Anything else would
    have its records deleted and its ``run.json`` overwritten by the child.
    Reads only where a flow has child flows.
    """
    pending = [(workflow_id, list(tasks))]
    while pending:
        parent_id, queue = pending.pop()
        parent_kinds: dict[str, str] | None = None
        for task in queue:
            step = task.step.func
            if task.kind != "flow" or not isinstance(step, ChildFlow):
                continue
            child_id = f"{parent_id}.{task.key}"
            where = manifest_key(child_id)
            blob = await storage.read(where)
            if blob is not None:
                owner = Manifest.decode(blob.data, where).parent
                if owner is None:  # a child written before children named their parent
                    if parent_kinds is None:
                        parent_kinds = await _kinds(storage, parent_id)
                    ours = parent_kinds.get(task.key) == "flow"
                else:
                    ours = owner == parent_id
                if not ours:
                    named = f"names parent {owner}" if owner else "names no parent"
                    raise ConfigurationError(
                        f"child flow {task.key!r} of workflow {parent_id} would run as workflow"
                        f" {child_id}, which belongs to another workflow (its run.json {named});"
                        " nothing was written. Give the child another key"
                        f" (task.add(child, key=...)), or clear {child_id} if it is not needed"
                    )
            pending.append((child_id, step.flow.task.queue))


async def _kinds(storage: Storage, workflow_id: str) -> dict[str, str]:
    where = manifest_key(workflow_id)
    blob = await storage.read(where)
    return Manifest.decode(blob.data, where).kinds if blob is not None else {}


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
            if kind != "flow":
                continue
            found_blob = await storage.read(manifest_key(child))
            if found_blob is None:
                continue
            owner = Manifest.decode(found_blob.data, manifest_key(child)).parent
            if owner is None or owner == current:  # one naming another parent is not ours
                found.append(child)
                pending.append(child)
    return found
