"""Durations written as people write them: ``7d``, ``12h``, ``1d12h``, ``30m``, ``45s``, ``2w``.

A leaf of the kernel: retention, ``Config(retention=...)`` and the command
line's ``--since`` / ``--older-than`` all parse them the same way.
"""

from __future__ import annotations

import datetime as dt
import re

from asyncflow._kernel.errors import ConfigurationError

__all__ = ["parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(value: object) -> float:
    """Seconds from ``7d``, ``12h``, ``1d12h``, ``30m``, ``45s``, ``2w``, a number, a timedelta."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            try:
                seconds = float(text)
            except ValueError:
                raise ConfigurationError(
                    f"not a duration: {value!r} (use e.g. 7d, 12h, 1d12h, 30m, 45s, 2w)"
                ) from None
        else:
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ConfigurationError(f"not a duration: {value!r}")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigurationError(f"a retention must be a positive duration, got {value!r}")
    return seconds
