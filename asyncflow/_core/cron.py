"""Cron expressions and the tick stamps of scheduled workflow ids.

croniter is an optional extra: it is imported only here, when a schedule is
made, so that the rest of asyncflow never needs it. The stamp format and
its exact match live side by side, so the ids a schedule makes and the ids
its retention may delete cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import re

from asyncflow._kernel.errors import ConfigurationError

__all__ = ["check_cron", "cron_next", "is_stamped", "tick_stamp"]

_UTC = dt.timezone.utc
#: the tick stamp of ``Scheduler.run_id``, to the minute or to the second
_STAMP = re.compile(r"\d{8}T\d{4}(?:\d{2})?Z")


def check_cron(cron: object) -> None:
    """Refuse ``cron`` unless croniter is installed and reads it."""
    try:
        from croniter import croniter
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ImportError(
            "scheduling needs its extra (croniter is missing):"
            " pip install 'asyncflow-durable[scheduler]'"
        ) from exc
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise ConfigurationError(f"not a valid cron expression: {cron!r}")


def cron_next(cron: str, after: dt.datetime) -> dt.datetime:
    """The first tick of ``cron`` strictly after ``after``, in ``after``'s timezone."""
    from croniter import croniter

    following: dt.datetime = croniter(cron, after).get_next(dt.datetime)
    return following


def tick_stamp(tick: dt.datetime, seconds: bool) -> str:
    """``tick`` in UTC as ``YYYYmmddTHHMMZ`` (``seconds``: ``YYYYmmddTHHMMSSZ``)."""
    return tick.astimezone(_UTC).strftime("%Y%m%dT%H%M%SZ" if seconds else "%Y%m%dT%H%MZ")


def is_stamped(workflow_id: str, base: str) -> bool:
    """Whether ``workflow_id`` is ``base`` itself or ``{base}.{tick stamp}``."""
    if workflow_id == base:
        return True
    head, dot, stamp = workflow_id.rpartition(".")
    return bool(dot) and head == base and _STAMP.fullmatch(stamp) is not None
