"""``Context``: the value a step receives from before it, as in Dotflow."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Context"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True, slots=True)
class Context:
    """A step's input or output: ``storage`` holds the value itself.

    Frozen so that a step cannot change what an earlier step produced, which
    would make a resumed run differ from an uninterrupted one.
    """

    storage: Any = None
    task_id: int | None = None
    workflow_id: str | None = None
    key: str | None = None
    time: dt.datetime = field(default_factory=_now, compare=False)
