"""Durable waits, as steps: ``flow.task.add(step=wait.signal("approval"))``.

``sleep(seconds_or_timedelta)``, ``until(datetime)`` and
``signal(name, timeout=None)``. What a wait waits for is fixed the first time
a run reaches it and survives any crash or restart; see docs/waits.md and
``asyncflow._core.waits``.
"""

from asyncflow._core.waits import WaitAction, WaitSpec, signal, sleep, until
from asyncflow._kernel.public import publish

__all__ = ["WaitAction", "WaitSpec", "signal", "sleep", "until"]

publish(__name__, globals())
