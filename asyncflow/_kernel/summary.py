"""Run summaries: ``{wf}/runs/{run_id}.json``, one per ``start()``, and their run ids.

A summary holds each task's outcome, attempts, start and end, and for a
failure the exception's type, message and a bounded traceback that starts
at the step's own code (asyncflow's and anyio's frames above it are left
out). Since the progress index it also keeps the run's graph (``shape``)
and its maps' children (``children``, at most ``progress.PROGRESS_CAP``;
``children_omitted`` counts the rest). The format is in docs/runs.md.
"""

from __future__ import annotations

import os
import secrets
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from asyncflow._kernel.checkpoint import FORMAT
from asyncflow._kernel.codec import dumps, loads, required_field, text_json
from asyncflow._kernel.errors import CheckpointCorrupt
from asyncflow._kernel.layout import run_summary_key
from asyncflow._kernel.shape import RunShape

if TYPE_CHECKING:
    from asyncflow._core.task import Task

__all__ = [
    "ErrorInfo",
    "RunSummary",
    "TaskRun",
    "cut",
    "encode_run",
    "new_run_id",
    "public_type",
    "run_summary_key",
    "runs_prefix",
    "user_frames",
]

_MESSAGE_LIMIT = 2000
_TRACEBACK_LIMIT = 8000


def runs_prefix(workflow_id: str) -> str:
    return f"{workflow_id}/runs/"


def new_run_id(now: float | None = None) -> str:
    """Sortable by start time (UTC, microseconds), unique by a random tail: a valid id."""
    moment = time.time() if now is None else now
    whole = int(moment)
    micro = round((moment - whole) * 1_000_000) % 1_000_000
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(whole))
    return f"{stamp}.{micro:06d}Z-{secrets.token_hex(3)}"


_INTERNAL = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    os.path.dirname(os.path.abspath(anyio.__file__)) + os.sep,
)


def user_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame outside asyncflow and anyio: the step's own code."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename.startswith(_INTERNAL):
        start = start.tb_next
    return start if start is not None else tb


_OLD_ERRORS = "asyncflow._kernel.errors."


def public_type(name: str) -> str:
    """An error type as summaries name it: ``asyncflow.TaskTimeout`` also for the
    ``asyncflow._kernel.errors.TaskTimeout`` that summaries written before 0.1 name."""
    if name.startswith(_OLD_ERRORS):
        return "asyncflow." + name[len(_OLD_ERRORS) :]
    return name


def cut(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    if keep_end:
        return "..." + text[-(limit - 3) :]
    return text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A task's last error: type, message and traceback (the end kept when too long)."""

    type: str
    message: str
    traceback: str

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        lines = traceback.format_exception(kind, exc, user_frames(exc.__traceback__))
        return cls(
            type=name,
            message=cut(str(exc), _MESSAGE_LIMIT),
            traceback=cut("".join(lines), _TRACEBACK_LIMIT, keep_end=True),
        )

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


@dataclass(frozen=True, slots=True)
class TaskRun:
    """What happened to one task in one run."""

    key: str
    step: str
    outcome: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    error: ErrorInfo | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @classmethod
    def of(cls, task: Task) -> TaskRun:
        return cls(
            key=task.key,
            step=task.name,
            outcome=task.outcome,
            attempts=task.attempts,
            started_at=task.started,
            finished_at=task.finished,
            error=ErrorInfo.of(task.error) if task.error is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "step": self.step,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error.to_json() if self.error is not None else None,
        }


@dataclass(frozen=True, slots=True)
class RunSummary:
    """``{wf}/runs/{run_id}.json``: one run, as it ended (or ``running`` while it runs)."""

    workflow_id: str
    run_id: str
    status: str
    mode: str
    resume: bool
    started_at: float
    finished_at: float | None
    host: str
    pid: int
    tasks: tuple[TaskRun, ...] = ()
    interrupted: tuple[str, ...] = ()
    rerun_from: str | None = None
    version: str = ""
    error: ErrorInfo | None = None
    forked_from: str | None = None
    shape: RunShape | None = None
    children: tuple[TaskRun, ...] = ()
    children_omitted: int = 0

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        return {
            "asyncflow": FORMAT,
            "kind": "run",
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "status": self.status,
            "mode": self.mode,
            "resume": self.resume,
            "rerun_from": self.rerun_from,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "interrupted": list(self.interrupted),
            "tasks": [task.to_json() for task in self.tasks],
            "error": self.error.to_json() if self.error is not None else None,
            "forked_from": self.forked_from,
            "shape": self.shape.to_json() if self.shape is not None else None,
            "children": [task.to_json() for task in self.children],
            "children_omitted": self.children_omitted,
        }

    def encode(self) -> bytes:
        return dumps(self.to_json())

    @classmethod
    def decode(cls, data: bytes, where: str) -> RunSummary:
        try:
            raw = loads(data)
            if not isinstance(raw, dict) or raw.get("kind") != "run":
                raise ValueError("not an asyncflow run summary")
            if type(raw.get("asyncflow")) is not int or raw["asyncflow"] > FORMAT:
                raise ValueError(f"format {raw.get('asyncflow')!r} is not one this version reads")
            tasks = tuple(_task_run(item) for item in required_field(raw, "tasks", list))
            return cls(
                workflow_id=required_field(raw, "workflow_id", str),
                run_id=required_field(raw, "run_id", str),
                status=required_field(raw, "status", str),
                mode=required_field(raw, "mode", str),
                resume=bool(raw.get("resume", False)),
                started_at=float(required_field(raw, "started_at", (int, float))),
                finished_at=_number(raw.get("finished_at")),
                host=str(raw.get("host", "")),
                pid=int(raw.get("pid", 0)),
                tasks=tasks,
                interrupted=tuple(str(k) for k in raw.get("interrupted", [])),
                rerun_from=_optional_str(raw.get("rerun_from")),
                version=str(raw.get("version", "")),
                error=_error_info(raw.get("error")),
                forked_from=_optional_str(raw.get("forked_from")),
                shape=RunShape.from_json(raw["shape"]) if raw.get("shape") is not None else None,
                children=tuple(_task_run(item) for item in raw.get("children", [])),
                children_omitted=int(raw.get("children_omitted", 0)),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointCorrupt(f"{where} is malformed: {exc}", key=where) from exc


def encode_run(summary: RunSummary, tasks: Sequence[Task]) -> bytes:
    """``summary`` with a ``TaskRun`` of each of ``tasks``, encoded: the same bytes as
    ``replace(summary, tasks=tuple(TaskRun.of(t) for t in tasks)).encode()``.

    An ended run's summary names every task of the flow; building a frozen
    ``TaskRun`` and a dict per task only to encode it cost more per task than
    running a trivial step. Entries are formatted directly instead, through
    the same escaper and ``float.__repr__`` that ``json`` uses; a task with an
    error goes through ``TaskRun`` (its traceback is formatted there anyway).
    """
    entries = []
    for task in tasks:
        if task.error is not None:
            entries.append(dumps(TaskRun.of(task).to_json()).decode())
            continue
        started = "null" if task.started is None else repr(float(task.started))
        finished = "null" if task.finished is None else repr(float(task.finished))
        entries.append(
            f'{{"key":{text_json(task.key)},"step":{text_json(task.name)},'
            f'"outcome":"{task.outcome}","attempts":{int(task.attempts)!r},'
            f'"started_at":{started},"finished_at":{finished},"error":null}}'
        )
    head = dumps(summary.to_json())
    empty = b'"tasks":[]'
    at = head.index(empty)  # keys are fixed and strings escape '"': this is the member
    body = ",".join(entries).encode()
    return b"".join((head[: at + len(empty) - 1], body, head[at + len(empty) - 1 :]))


def _optional_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"not a string: {value!r}")
    return value


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _error_info(error: Any) -> ErrorInfo | None:
    if error is None:
        return None
    if not isinstance(error, dict):
        raise ValueError("an error entry is not an object")
    return ErrorInfo(
        type=public_type(str(error.get("type", ""))),
        message=str(error.get("message", "")),
        traceback=str(error.get("traceback", "")),
    )


def _task_run(raw: Any) -> TaskRun:
    if not isinstance(raw, dict):
        raise ValueError("a task entry is not an object")
    info = _error_info(raw.get("error"))
    return TaskRun(
        key=required_field(raw, "key", str),
        step=required_field(raw, "step", str),
        outcome=required_field(raw, "outcome", str),
        attempts=required_field(raw, "attempts", int),
        started_at=_number(raw.get("started_at")),
        finished_at=_number(raw.get("finished_at")),
        error=info,
    )
