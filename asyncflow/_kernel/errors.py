"""Every error asyncflow raises, under one root so callers can catch them all.

::

    AsyncflowError
    ├── ConfigurationError        bad arguments, impossible settings
    ├── TaskError                 a step did not complete
    │   ├── TaskFailed            its last attempt raised
    │   └── TaskTimeout           its last attempt ran out of time
    ├── CheckpointError           a checkpoint cannot be used
    │   ├── CheckpointMismatch    the step at that key is not the one recorded
    │   ├── CheckpointCorrupt     the record cannot be decoded or trusted
    │   └── SerializationError    an output cannot be encoded exactly
    ├── StorageError              the backend failed; never means "no checkpoint"
    │   ├── PreconditionFailed    a conditional write lost its race
    │   └── StorageUnavailable    the backend cannot be reached (transient)
    ├── WorkflowLocked            another runner holds the workflow's lease
    ├── LeaseLost                 this runner no longer holds the lease
    └── InputChangedError         the inputs differ from the checkpointed run

A failed step is reported on its task (``task.status``/``task.error``) and is
raised only with ``start(raise_on_failure=True)``; storage and configuration
errors always raise, because continuing past them could lose a checkpoint.
"""

from __future__ import annotations

__all__ = [
    "AsyncflowError",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointMismatch",
    "ConfigurationError",
    "InputChangedError",
    "LeaseLost",
    "PreconditionFailed",
    "SerializationError",
    "StorageError",
    "StorageUnavailable",
    "TaskError",
    "TaskFailed",
    "TaskTimeout",
    "WorkflowLocked",
]


class AsyncflowError(Exception):
    """Root of every asyncflow error."""


class ConfigurationError(AsyncflowError, ValueError):
    """Raised before anything runs or is written, so fixing the call is enough."""


class TaskError(AsyncflowError):
    """A step did not complete; ``key`` and ``step`` say which.

    ``attempt``, ``exception`` and ``message`` are the fields of Dotflow's
    ``TaskError``: the attempt that failed, and the class name and message of
    the step's own exception (``cause``) if there is one, else of this error.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str = "",
        step: str = "",
        attempt: int | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.step = step
        self.attempt = attempt
        self.exception = type(cause if cause is not None else self).__name__
        self.message = str(cause) if cause is not None else message


class TaskFailed(TaskError):
    """The step's last attempt raised; the original is ``__cause__``."""


class TaskTimeout(TaskError):
    """The step's last attempt was cancelled by its ``timeout``."""


class CheckpointError(AsyncflowError):
    """A checkpoint exists but cannot be used as it is."""


class CheckpointMismatch(CheckpointError):
    """The record at a key was written by a different step.

    Reusing it would feed one step's output to another, so resume refuses.
    """


class CheckpointCorrupt(CheckpointError):
    """A record cannot be decoded, verified, or belongs elsewhere.

    It is never silently re-run over: a human should look at ``key`` first.
    """

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class SerializationError(CheckpointError, TypeError):
    """An output cannot be encoded exactly; nothing was written."""


class StorageError(AsyncflowError):
    """The storage backend failed; the operation may or may not have happened."""


class PreconditionFailed(StorageError):
    """A conditional write (``if_absent``/``if_version``) lost: nothing was written."""


class StorageUnavailable(StorageError):
    """The backend could not be reached or asked us to slow down."""


class WorkflowLocked(AsyncflowError):
    """Another live runner holds the workflow's lease."""


class LeaseLost(AsyncflowError):
    """This runner's lease expired or was taken over; it stopped before committing."""


class InputChangedError(AsyncflowError):
    """``on_input_change="raise"`` and the inputs differ from the checkpointed run."""
