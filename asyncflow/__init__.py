"""asyncflow: asyncio-native workflows that checkpoint every step and resume after a crash."""

import logging

from asyncflow._core.action import Action, action
from asyncflow._core.config import Config
from asyncflow._core.context import Context
from asyncflow._core.errors import (
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
from asyncflow._core.flow import AsyncFlow
from asyncflow._core.retention import prune
from asyncflow._core.task import Task, TaskStatus, TypeStatus

__version__ = "0.1.0.dev0"

__all__ = [
    "Action",
    "AsyncFlow",
    "AsyncflowError",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointMismatch",
    "Config",
    "ConfigurationError",
    "Context",
    "InputChangedError",
    "LeaseLost",
    "PreconditionFailed",
    "SerializationError",
    "StorageError",
    "StorageUnavailable",
    "Task",
    "TaskError",
    "TaskFailed",
    "TaskStatus",
    "TaskTimeout",
    "TypeStatus",
    "WorkflowLocked",
    "__version__",
    "action",
    "prune",
]

logging.getLogger("asyncflow").addHandler(logging.NullHandler())
