"""Failures nobody handles are never silent.

asyncflow installs a ``NullHandler`` on its logger (a library must not
configure logging), which also switches off Python's last-resort handler:
a script with no logging set up would print nothing when a step fails and
exit 0. ``log_loudly`` logs at ERROR as usual and, when no real handler
would receive the record, hands it to ``logging.lastResort`` (stderr), as
Python itself does for a library without a ``NullHandler``.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

__all__ = ["log_loudly", "logging_configured"]

logger = logging.getLogger("asyncflow")


def logging_configured(target: logging.Logger = logger) -> bool:
    """Whether a record of ``target`` reaches a handler other than a ``NullHandler``."""
    current: logging.Logger | None = target
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def log_loudly(
    message: str,
    *args: Any,
    exc_info: BaseException | None = None,
    traceback: TracebackType | None = None,
) -> None:
    """``logger.error``, and the same text on stderr when logging is not configured.

    ``traceback`` replaces the exception's own (the frames of the step, say).
    """
    if not logger.isEnabledFor(logging.ERROR):
        return
    info = None
    if exc_info is not None:
        info = (type(exc_info), exc_info, traceback or exc_info.__traceback__)
    record = logger.makeRecord(logger.name, logging.ERROR, "asyncflow", 0, message, args, info)
    logger.handle(record)
    fallback = logging.lastResort
    if fallback is not None and not logging_configured():
        fallback.handle(record)
