"""A failed step's exception, readable as a Dotflow ``TaskError`` record.

Dotflow keeps one record per failed attempt with ``attempt``, ``exception``
(the exception's class name) and ``message``. asyncflow keeps the exceptions
themselves in ``task.errors`` and ``task.error``, so that ported code reading
those three fields finds them on the exception. A name that the exception's
class or instance already defines is left alone: it is the author's.
"""

from __future__ import annotations

from asyncflow._kernel.errors import TaskError

__all__ = ["carry_fields"]


def carry_fields(exc: BaseException, attempt: int | None) -> None:
    """Give ``exc``, raised by attempt ``attempt`` (None: no attempt ran), Dotflow's fields."""
    if isinstance(exc, TaskError):  # ours: the fields are declared and set
        if exc.attempt is None:
            exc.attempt = attempt
        return
    own = vars(exc)  # every exception has one; writing it bypasses a frozen __setattr__
    kind = type(exc)

    def free(name: str) -> bool:
        return name not in own and not hasattr(kind, name)

    if free("attempt"):
        own["attempt"] = attempt
    if free("exception"):
        own["exception"] = kind.__name__
    if free("message"):
        own["message"] = str(exc)
