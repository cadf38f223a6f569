"""Moments a record may hold: a real date, not any float.

A wake time or a deadline becomes a ``datetime`` wherever it is shown or
slept on, and ``datetime`` stops at year 9999: a float past that (a
``wait.sleep(1e12)``, a tampered record) would crash whoever reads it. The
engine refuses such a time when a wait is built or armed; a reader marks
one it finds instead of failing (``asyncflow.reading``).
"""

from __future__ import annotations

import datetime as dt
import math

__all__ = ["EARLIEST", "LATEST", "LATEST_TEXT", "is_moment"]

_UTC = dt.timezone.utc
#: The first and last instants every reader can turn into a UTC datetime.
EARLIEST = dt.datetime(1, 1, 1, tzinfo=_UTC).timestamp()
LATEST = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=_UTC).timestamp()
LATEST_TEXT = "9999-12-31 23:59:59 UTC"


def is_moment(value: object) -> bool:
    """Whether ``value`` is an epoch time in seconds that a UTC datetime can hold."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and EARLIEST <= value <= LATEST
    )
