"""The progress index while a run writes it (the reader's side is ``asyncflow.reading``).

The runner only appends each task that ends to ``Runner.finished`` (a list
append per step); the live ``run.json`` writer (``runs.RunRecorder``, at
most once a second, only on change) turns that list into index entries and
serialises them, within the bounds ``asyncflow.reading`` documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from asyncflow._kernel.summary import ErrorInfo, cut
from asyncflow.reading._progress import (
    ERRORS,
    MESSAGE_LIMIT,
    PROGRESS_CAP,
    TRACEBACK_LIMIT,
    TRACEBACKS,
    Finished,
)

if TYPE_CHECKING:
    from asyncflow._core.task import Task
    from asyncflow._kernel.checkpoint import CheckpointRecord

__all__ = ["ProgressIndex"]


class ProgressIndex:
    """The index of one run while it is written: fed by the runner, drained by the writer."""

    def __init__(
        self,
        finished: list[Task],
        records: Mapping[str, CheckpointRecord] | None = None,
        *,
        cap: int = PROGRESS_CAP,
    ) -> None:
        self.finished = finished  # the runner's list: appended per step, emptied here
        self.records = records if records is not None else {}
        self.cap = cap
        self.entries: dict[str, Finished] = {}
        self.omitted = 0
        self._done: list[list[Any]] = []
        self._errors: dict[str, dict[str, str]] = {}

    def drain(self) -> bool:
        """Index the tasks that ended since the last call; true if there were any."""
        if not self.finished:
            return False
        batch = list(self.finished)
        self.finished.clear()
        for task in batch:
            if task.key in self.entries:
                continue  # a task runs once per run; a second sighting changes nothing
            if len(self.entries) >= self.cap:
                self.omitted += 1
                continue
            entry = self._entry(task)
            self.entries[task.key] = entry
            self._done.append(
                [entry.key, entry.outcome, entry.attempts, entry.started_at, entry.finished_at]
            )
            if entry.error is not None:
                self._errors[entry.key] = entry.error.to_json()
        return True

    def _entry(self, task: Task) -> Finished:
        started = task.started_at.timestamp() if task.started_at is not None else None
        finished = task.finished_at.timestamp() if task.finished_at is not None else None
        if task.restored:
            record = self.records.get(task.key)
            if record is not None:
                started, finished = record.started_at, record.finished_at
        error = None
        if task.error is not None and len(self._errors) < ERRORS:
            info = ErrorInfo.of(task.error)
            keep = len(self._errors) < TRACEBACKS
            error = ErrorInfo(
                type=info.type,
                message=cut(info.message, MESSAGE_LIMIT),
                traceback=cut(info.traceback, TRACEBACK_LIMIT, keep_end=True) if keep else "",
            )
        return Finished(
            key=task.key,
            outcome=task.outcome,
            attempts=task.attempts,
            started_at=started,
            finished_at=finished,
            error=error,
            step=task.name,
        )

    def to_json(self) -> dict[str, Any]:
        """What ``run.json`` holds; shares the entry lists (serialise it before the next drain)."""
        return {"done": self._done, "errors": self._errors, "omitted": self.omitted}
