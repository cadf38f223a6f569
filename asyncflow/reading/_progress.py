"""The progress index as a reader finds it in a live run's ``run.json``.

A reader (the viewer, ``asyncflow status``) draws a running run from this
one object instead of listing and reading every task record, which on an
object store costs a request per task. The runner writes it (at most once a
second, only on change); it is bounded: at most ``PROGRESS_CAP`` finished
tasks (map children included) are indexed, later ones only counted in
``omitted``, and a reader falls back to the task records for keys the index
does not name. The first failures keep their error (type, message, and for
the first few a traceback), so ``run.json`` stays under about 1 MB.

In ``run.json``::

    "progress": {"done": [[key, outcome, attempts, started_at, finished_at], ...],
                 "errors": {key: {"type": ..., "message": ..., "traceback": ...}},
                 "omitted": 0}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asyncflow._kernel.errors import CheckpointCorrupt
from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.summary import ErrorInfo, public_type

__all__ = [
    "ERRORS",
    "MESSAGE_LIMIT",
    "PROGRESS_CAP",
    "TRACEBACKS",
    "TRACEBACK_LIMIT",
    "Finished",
    "RunProgress",
    "progress_of",
]

#: Finished tasks (map children included) one ``run.json`` indexes at most.
PROGRESS_CAP = 5000
#: Failed tasks whose error the index keeps (the first ones to fail); later ones are
#: indexed as ``failed`` without it (their summary has it once the run ends).
ERRORS = 500
#: Failed tasks whose traceback the index keeps (the first ones to fail).
TRACEBACKS = 20
MESSAGE_LIMIT = 500
TRACEBACK_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Finished:
    """One task that ended in the run: its outcome, attempts and times, and its error."""

    key: str
    outcome: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    error: ErrorInfo | None = None
    step: str = ""

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class RunProgress:
    """The index as a reader finds it in ``run.json``."""

    tasks: dict[str, Finished]
    omitted: int = 0

    @property
    def complete(self) -> bool:
        """Every task that ended is indexed (none beyond the cap)."""
        return self.omitted == 0

    @classmethod
    def from_json(cls, raw: Any) -> RunProgress:
        """Parse ``run.json``'s ``progress``; ``ValueError`` says what is wrong with it."""
        if not isinstance(raw, dict):
            raise ValueError("progress is not an object")
        done, errors, omitted = raw.get("done", []), raw.get("errors", {}), raw.get("omitted", 0)
        if not isinstance(done, list) or not isinstance(errors, dict):
            raise ValueError("progress.done must be a list and progress.errors an object")
        if type(omitted) is not int or omitted < 0:
            raise ValueError("progress.omitted must be a count")
        tasks: dict[str, Finished] = {}
        for item in done:
            if not (isinstance(item, list) and len(item) == 5):
                raise ValueError(f"a progress entry is not [key, outcome, attempts, times]: {item}")
            key, outcome, attempts, started, finished = item
            if not (isinstance(key, str) and isinstance(outcome, str) and type(attempts) is int):
                raise ValueError(f"a progress entry has the wrong types: {item!r}")
            tasks[key] = Finished(
                key, outcome, attempts, _time(started), _time(finished), _error(errors.get(key))
            )
        return cls(tasks, omitted)


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"a progress time is not a number: {value!r}")
    return float(value)


def _error(raw: Any) -> ErrorInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("a progress error is not an object")
    return ErrorInfo(
        type=public_type(str(raw.get("type", ""))),
        message=str(raw.get("message", "")),
        traceback=str(raw.get("traceback", "")),
    )


def progress_of(manifest: Manifest) -> RunProgress | None:
    """The progress index of a live run's ``run.json`` (``None`` when it has none).

    ``CheckpointCorrupt`` naming ``run.json`` when the index is malformed.
    """
    if manifest.progress is None:
        return None
    try:
        return RunProgress.from_json(manifest.progress)
    except ValueError as exc:
        where = manifest_key(manifest.workflow_id)
        problem = f"{where} has a malformed progress index: {exc}"
        raise CheckpointCorrupt(problem, key=where) from exc
