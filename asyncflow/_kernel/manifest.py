"""``run.json``: the latest run of a workflow, as one small record.

It is the one object a reader needs to say what a workflow is doing, so it
carries the run's shape (keys, steps, dependencies, kinds) as well as its
status; ``fingerprint_of`` hashes a run's inputs so resume can tell a
changed input from a crash.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from asyncflow._kernel.checkpoint import FORMAT
from asyncflow._kernel.codec import (
    deps_dict,
    dumps,
    int_dict,
    loads,
    optional_field,
    optional_float,
    required_field,
    str_dict,
    str_tuple,
    waiting_dict,
)
from asyncflow._kernel.errors import CheckpointCorrupt, SerializationError
from asyncflow._kernel.serializers import Serializer

__all__ = ["Manifest", "fingerprint_of"]


@dataclass(frozen=True, slots=True)
class Manifest:
    """``run.json``: the latest run's status and the inputs' fingerprint.

    ``steps`` holds the step name of each key in ``tasks`` (same order);
    ``outcomes`` maps each key to what happened to it in the latest finished
    run (``completed``, ``skipped``, ``failed``, ``cancelled``, ``not run``)
    and ``errors`` each failed key to its last error. All three are optional
    in older manifests (decoded as empty), and ``outcomes``/``errors`` are
    empty while a run is going on.

    The flow's shape, so that tools can draw and walk it without the code
    (all optional, absent in manifests of earlier versions): ``depends_on``
    maps each key with dependencies to them, ``kinds`` each key that is not a
    plain step to ``map`` or ``flow``, ``over`` each map to the key it maps
    over, ``children`` each map that expanded to its number of children
    (keys ``{map}.0``... ``{map}.{n-1}``). ``keys`` is ``"name"`` when keys
    derive from step names (this version) and empty before.
    ``waiting`` maps each key parked at a durable wait to what it waits for
    (``WaitSpec.to_json()``: kind, wake_at, signal, deadline) and ``due_at``
    is the earliest time one becomes due by the clock (``None`` when only
    signals can wake the run); both are written only when a run parks, and
    are what a worker's scan reads (``asyncflow._core.worker``).


    Since run history: ``run_id`` names the run (its summary is
    ``runs/{run_id}.json``), ``running`` the keys in progress while it is
    live, ``interrupted`` the keys a cancelled run stopped in, ``groups`` each
    key's ``group_name`` (what ``reset --from`` walks), ``host``/``pid`` who
    runs it and ``started_at`` when this run began. All optional on decode.
    ``progress`` is the live run's index of finished tasks, as JSON
    (``asyncflow._core.progress``); only a live run's ``run.json`` has it.
    """

    workflow_id: str
    status: str
    fingerprint: str | None
    mode: str
    tasks: tuple[str, ...]
    created_at: float
    updated_at: float
    steps: tuple[str, ...] = ()
    outcomes: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    depends_on: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    over: dict[str, str] = field(default_factory=dict)
    children: dict[str, int] = field(default_factory=dict)
    keys: str = ""
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    due_at: float | None = None

    run_id: str | None = None
    running: tuple[str, ...] = ()
    interrupted: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    host: str | None = None
    pid: int | None = None
    started_at: float | None = None
    progress: dict[str, Any] | None = None
    #: The flow's name (``AsyncFlow(name=...)``): workers match queued runs by it.
    flow: str | None = None
    #: A child flow's parent workflow id (its own id is ``{parent}.{key}``).
    parent: str | None = None
    #: Why each task whose outcome is ``skipped`` without a checkpoint never ran
    #: (``"upstream failed"``); a ``skipped`` key not here was restored.
    skipped: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        shape: dict[str, Any] = {}
        if self.keys:
            shape["keys"] = self.keys
        if self.depends_on:
            shape["depends_on"] = {key: list(deps) for key, deps in self.depends_on.items()}
        if self.kinds:
            shape["kinds"] = self.kinds
        if self.over:
            shape["over"] = self.over
        if self.children:
            shape["children"] = self.children
        extra: dict[str, Any] = {}
        if self.waiting:
            extra = {"waiting": self.waiting, "due_at": self.due_at}
        if self.progress is not None:
            extra["progress"] = self.progress
        if self.flow is not None:
            extra["flow"] = self.flow
        if self.parent is not None:
            extra["parent"] = self.parent
        if self.skipped:
            extra["skipped"] = self.skipped
        return dumps(
            {
                "asyncflow": FORMAT,
                "workflow_id": self.workflow_id,
                "status": self.status,
                "fingerprint": self.fingerprint,
                "mode": self.mode,
                "tasks": list(self.tasks),
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                "steps": list(self.steps),
                "outcomes": self.outcomes,
                "errors": self.errors,
                **shape,
                **extra,
                "run_id": self.run_id,
                "running": list(self.running),
                "interrupted": list(self.interrupted),
                "groups": list(self.groups),
                "host": self.host,
                "pid": self.pid,
                "started_at": self.started_at,
            }
        )

    @classmethod
    def decode(cls, data: bytes, where: str) -> Manifest:
        try:
            raw = loads(data)
            if not isinstance(raw, dict) or type(raw.get("asyncflow")) is not int:
                raise ValueError("not an asyncflow run manifest")
            if raw["asyncflow"] > FORMAT:
                raise ValueError(f"format {raw['asyncflow']} is newer than {FORMAT}: upgrade")
            return cls(
                workflow_id=required_field(raw, "workflow_id", str),
                status=required_field(raw, "status", str),
                fingerprint=required_field(raw, "fingerprint", (str, type(None))),
                mode=required_field(raw, "mode", str),
                tasks=str_tuple(required_field(raw, "tasks", list), "tasks"),
                created_at=float(required_field(raw, "created_at", (int, float))),
                updated_at=float(required_field(raw, "updated_at", (int, float))),
                steps=str_tuple(raw.get("steps", []), "steps"),
                outcomes=str_dict(raw.get("outcomes", {}), "outcomes"),
                errors=str_dict(raw.get("errors", {}), "errors"),
                depends_on=deps_dict(raw.get("depends_on", {})),
                kinds=str_dict(raw.get("kinds", {}), "kinds"),
                over=str_dict(raw.get("over", {}), "over"),
                children=int_dict(raw.get("children", {}), "children"),
                keys=required_field(raw, "keys", str) if "keys" in raw else "",
                waiting=waiting_dict(raw.get("waiting", {})),
                due_at=optional_float(raw.get("due_at"), "due_at"),
                run_id=optional_field(raw, "run_id", str),
                running=str_tuple(raw.get("running", []), "running"),
                interrupted=str_tuple(raw.get("interrupted", []), "interrupted"),
                groups=str_tuple(raw.get("groups", []), "groups"),
                host=optional_field(raw, "host", str),
                pid=optional_field(raw, "pid", int),
                started_at=optional_field(raw, "started_at", (int, float)),
                progress=optional_field(raw, "progress", dict),
                flow=optional_field(raw, "flow", str),
                parent=optional_field(raw, "parent", str),
                skipped=str_dict(raw.get("skipped", {}), "skipped"),
            )
        except ValueError as exc:
            raise CheckpointCorrupt(f"{where} is malformed: {exc}", key=where) from exc

    def replace(self, **changes: Any) -> Manifest:
        values = {name: getattr(self, name) for name in Manifest.__slots__}
        values.update(changes)
        values["updated_at"] = time.time()
        return Manifest(**values)


def fingerprint_of(values: Iterator[Any] | list[Any], serializer: Serializer) -> str:
    """A stable hash of the initial contexts, via the same strict encoding as outputs."""
    try:
        payload = dumps(serializer.encode(list(values)))
    except (SerializationError, TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"cannot fingerprint the initial contexts ({exc}); pass start(fingerprint=...)"
        ) from exc
    return hashlib.sha256(payload).hexdigest()
