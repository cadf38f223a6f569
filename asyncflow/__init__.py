"""asyncflow: asyncio-native workflows that checkpoint every step and resume after a crash."""

import logging
from typing import Any

from asyncflow import wait
from asyncflow._core.action import Action, action
from asyncflow._core.clearing import Cleared, clear
from asyncflow._core.config import DEFAULT_MAX_OUTPUT_BYTES, Config
from asyncflow._core.context import Context
from asyncflow._core.flow import AsyncFlow, Mode
from asyncflow._core.retention import Pruned, prune
from asyncflow._core.signals import send_signal
from asyncflow._core.steer import fork, reset
from asyncflow._core.task import Task, TaskBuilder, TaskStatus, TypeStatus
from asyncflow._core.worker import Worker
from asyncflow._kernel.errors import (
    AsyncflowError,
    CheckpointCorrupt,
    CheckpointError,
    CheckpointMismatch,
    ConfigurationError,
    InputChangedError,
    LeaseLost,
    PreconditionFailed,
    SerializationError,
    StorageError,
    StorageUnavailable,
    TaskError,
    TaskFailed,
    TaskTimeout,
    WorkflowLocked,
)
from asyncflow._kernel.public import publish
from asyncflow._kernel.storage import Storage
from asyncflow._version import __version__

__all__ = [
    "Action",
    "AsyncFlow",
    "AsyncflowError",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointMismatch",
    "Cleared",
    "Config",
    "ConfigurationError",
    "Context",
    "InputChangedError",
    "LeaseLost",
    "Mode",
    "PreconditionFailed",
    "Pruned",
    "SerializationError",
    "StorageError",
    "StorageUnavailable",
    "Task",
    "TaskBuilder",
    "TaskError",
    "TaskFailed",
    "TaskStatus",
    "TaskTimeout",
    "TypeStatus",
    "Worker",
    "WorkflowLocked",
    "__version__",
    "action",
    "clear",
    "fork",
    "prune",
    "reset",
    "signal",
    "wait",
]


async def signal(
    storage: Storage,
    workflow_id: str,
    name: str,
    payload: Any = None,
    *,
    before_start: bool = False,
    max_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
) -> None:
    """Send the signal ``name`` (with a JSON payload) to ``workflow_id``, exactly once.

    Stored at ``{workflow_id}/signals/{name}.json`` with a conditional
    create: a second send of the same name raises ``PreconditionFailed``. A
    bad id or name, a workflow that does not exist (unless
    ``before_start=True``: the signal is then kept by the workflow's first
    start, fresh or not) or a completed run raise ``ConfigurationError``; a
    payload JSON cannot carry, or over ``max_bytes`` encoded (a flow's
    ``Config.max_output_bytes``, 64 MiB by default), ``SerializationError``.
    Nothing is written then. A run blocked on it in this process wakes at
    once, one elsewhere at its next poll (``Config.signal_poll``), a parked
    one when a worker or ``start(resume=True)`` resumes it. A signal sent
    after a wait's deadline does not complete it: the wait times out.
    """
    await send_signal(
        storage, workflow_id, name, payload, before_start=before_start, max_bytes=max_bytes
    )


logging.getLogger("asyncflow").addHandler(logging.NullHandler())

publish(__name__, globals())
