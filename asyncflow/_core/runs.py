"""Run history: a ``run_id`` per ``start()``, its summary, and ``run.json`` while it runs.

Every start writes ``{wf}/runs/{run_id}.json`` (status ``running``) once the
lease is held, and again when the run ends, with each task's outcome,
attempts, times and, for a failure, the exception's type, message and a
bounded traceback. ``run.json`` (the ``Manifest``) carries the same run id,
the keys of the tasks running now and the progress index of the tasks that
ended (``asyncflow._core.progress``), rewritten at most every ``LIVE_EVERY``
seconds and only when they changed, so a fast run writes nothing extra;
and, for a cancelled run, the interrupted task(s). The summary of an ended
run keeps its graph and its maps' children, from the same index.

A run whose process died leaves ``running`` behind; readers report it as
``crashed`` when no live lease backs it (``status.seen_status``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from asyncflow._core.index import write_manifest
from asyncflow._core.loud import log_loudly
from asyncflow._core.progress import ProgressIndex
from asyncflow._core.records import rearm_waits
from asyncflow._core.task import TaskStatus
from asyncflow._kernel.checkpoint import CheckpointRecord
from asyncflow._kernel.concurrency import run_beside
from asyncflow._kernel.errors import LeaseLost
from asyncflow._kernel.layout import task_prefix, task_storage_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.shape import RunShape, dependents, graph_edges
from asyncflow._kernel.snapshot import TaskSnapshot
from asyncflow._kernel.storage import Storage
from asyncflow._kernel.summary import (
    ErrorInfo,
    RunSummary,
    TaskRun,
    cut,
    encode_run,
    run_summary_key,
    user_frames,
)
from asyncflow._version import __version__
from asyncflow.reading import map_child

if TYPE_CHECKING:
    from asyncflow._core.runner import Runner
    from asyncflow._core.task import Task
    from asyncflow._kernel.lease import Lease

__all__ = ["LIVE_EVERY", "RunRecorder", "invalidate", "report_unhandled"]

#: ``run.json`` keeps a failed task's error ``repr`` up to this length.
_ERROR_LIMIT = 1000

logger = logging.getLogger("asyncflow")

#: How often (seconds) a live run checks whether its running tasks changed.
LIVE_EVERY = 1.0
#: The live writer waits at least this many times its last write's duration.
LIVE_BACKOFF = 10.0


def _interrupted(tasks: Sequence[Task]) -> tuple[str, ...]:
    return tuple(
        t.key
        for t in tasks
        if t.status in (TaskStatus.IN_PROGRESS, TaskStatus.RETRY, TaskStatus.CANCELLED)
    )


def _children(tasks: Sequence[Task]) -> dict[str, int]:
    """Each map's number of children once it expanded: a reader shows a live map's progress."""
    return {t.key: t.children for t in tasks if t.children is not None}


def _running(tasks: Sequence[Task]) -> tuple[str, ...]:
    return tuple(t.key for t in tasks if t.status in (TaskStatus.IN_PROGRESS, TaskStatus.RETRY))


@dataclass(slots=True)
class RunRecorder:
    """Writes one run's summary and keeps ``run.json`` current while the run is live."""

    storage: Storage
    workflow_id: str
    run_id: str
    mode: str
    resume: bool
    rerun_from: str | None = None
    started_at: float = field(default_factory=time.time)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    live_every: float | None = None  # None: ``LIVE_EVERY`` as it is when the run starts
    progress: ProgressIndex | None = None

    def _summary(
        self,
        status: str,
        tasks: Sequence[Task],
        finished: float | None,
        error: BaseException | None = None,
    ) -> RunSummary:
        """The summary without its task entries: ``end`` adds them with ``encode_run``."""
        return RunSummary(
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            status=status,
            mode=self.mode,
            resume=self.resume,
            started_at=self.started_at,
            finished_at=finished,
            host=self.host,
            pid=self.pid,
            interrupted=_interrupted(tasks) if status == "cancelled" else (),
            rerun_from=self.rerun_from,
            version=__version__,
            error=ErrorInfo.of(error) if error is not None else None,
        )

    async def begin(self) -> None:
        """The summary of a run that has started (``running``): a crash leaves it so."""
        summary = self._summary("running", (), None)
        with anyio.CancelScope(shield=True):
            await self.storage.write(
                run_summary_key(self.workflow_id, self.run_id), summary.encode()
            )

    async def end(
        self,
        status: str,
        tasks: Sequence[Task],
        manifest: Manifest,
        error: BaseException | None = None,
    ) -> None:
        """``run.json`` and the summary as the run ended; shielded from cancellation."""
        failed = [t for t in tasks if t.status is TaskStatus.FAILED]
        summary = self._with_shape(self._summary(status, tasks, time.time(), error), manifest)
        ended = manifest.replace(
            status=status,
            outcomes={t.key: t.outcome for t in tasks},
            errors={t.key: _error_line(t.error) for t in failed},
            skipped={t.key: t.skip_reason for t in tasks if t.skip_reason is not None},
            running=(),
            interrupted=summary.interrupted,
            progress=None,
        )
        with anyio.CancelScope(shield=True):
            await self.storage.write(
                run_summary_key(self.workflow_id, self.run_id), encode_run(summary, tasks)
            )
            await write_manifest(self.storage, ended, previous=manifest)

    def _with_shape(self, summary: RunSummary, manifest: Manifest) -> RunSummary:
        """The summary with the run's graph and the maps' children the index saw."""
        shape = RunShape(manifest.depends_on, manifest.kinds, manifest.over, manifest.children)
        if not shape and not manifest.children:
            return summary
        children: list[TaskRun] = []
        omitted = 0
        if self.progress is not None:
            self.progress.drain()
            top = set(manifest.tasks)
            children = [
                TaskRun(e.key, e.step, e.outcome, e.attempts, e.started_at, e.finished_at, e.error)
                for e in self.progress.entries.values()
                if e.key not in top
            ]
            omitted = self.progress.omitted
        return dataclasses.replace(
            summary, shape=shape, children=tuple(children), children_omitted=omitted
        )

    async def end_after(
        self, status: str, tasks: Sequence[Task], manifest: Manifest, error: BaseException
    ) -> None:
        """``end`` for a run stopped by an exception, which is what the caller will see.

        A failure to record it (the storage that just failed, say) is logged,
        not raised over the exception that stopped the run.
        """
        own = None if isinstance(error, anyio.get_cancelled_exc_class()) else error
        if isinstance(error, KeyboardInterrupt):
            own = None
        try:
            await self.end(status, tasks, manifest, own)
        except Exception as exc:
            logger.warning(
                "%s: could not record how run %s ended (%s): %r",
                self.workflow_id,
                self.run_id,
                status,
                exc,
            )

    async def alongside(
        self,
        body: Callable[[], Awaitable[None]],
        tasks: Sequence[Task],
        manifest: Manifest,
        lease: Lease | None,
        runner: Runner,
    ) -> None:
        """Run ``body`` while ``run.json`` lists the running tasks and indexes the ended ones."""
        progress = self.progress = ProgressIndex(runner.finished, runner.records)

        async def watch(_: anyio.CancelScope) -> None:
            await self._watch(tasks, manifest, lease, progress)

        await run_beside(body, watch)

    async def _watch(
        self,
        tasks: Sequence[Task],
        manifest: Manifest,
        lease: Lease | None,
        progress: ProgressIndex,
    ) -> None:
        shown: tuple[str, ...] = ()
        unsaved = False
        every = LIVE_EVERY if self.live_every is None else self.live_every
        pause = every
        while True:
            await anyio.sleep(pause)
            running = _running(tasks)
            unsaved = progress.drain() or unsaved
            if running == shown and not unsaved:
                continue
            if lease is not None:
                try:
                    lease.ensure()
                except LeaseLost:
                    return  # the heartbeat stops the run; nothing more to show
            clock = anyio.current_time()
            try:
                live = manifest.replace(
                    running=running,
                    progress=progress.to_json(),
                    children=_children(tasks),
                    skipped={t.key: t.skip_reason for t in tasks if t.skip_reason is not None},
                )
                await write_manifest(self.storage, live, previous=manifest)
            except Exception as exc:  # progress is advisory; the run goes on
                logger.warning(
                    "%s: could not update run.json with the running tasks: %r",
                    self.workflow_id,
                    exc,
                )
                continue
            shown = running
            unsaved = False
            # A slow write means a busy store (many runs share it): back off
            # instead of queueing a progress write per run every second.
            pause = max(every, LIVE_BACKOFF * (anyio.current_time() - clock))


def _error_line(error: BaseException | None) -> str:
    """``repr`` of a task's error, cut to a sane length for ``run.json``."""
    return cut(repr(error), _ERROR_LIMIT)


def report_unhandled(workflow_id: str, run_id: str, tasks: Sequence[Task]) -> None:
    """Log a failed run that nobody handles at ERROR; on stderr if logging is not set up."""
    failed = [t for t in tasks if t.status is TaskStatus.FAILED]
    if not failed:
        return
    lines = [
        f"step {t.name} (key {t.key}) failed after {t.attempts} attempt(s):"
        f" {type(t.error).__name__}: {t.error}"
        for t in failed
    ]
    log_loudly(
        "asyncflow: workflow %s failed (run %s)\n  %s\n"
        "(handle it with start(raise_on_failure=True) or on_failure=; `asyncflow status %s`"
        " shows the run)",
        workflow_id,
        run_id,
        "\n  ".join(lines),
        workflow_id,
        exc_info=failed[0].error,
        traceback=user_frames(failed[0].error.__traceback__ if failed[0].error else None),
    )


async def invalidate(
    storage: Storage,
    workflow_id: str,
    tasks: Sequence[Task],
    key: str,
    mode: str,
    records: dict[str, CheckpointRecord],
    snapshot: TaskSnapshot | None = None,
) -> list[str]:
    """``rerun_from``: forget and delete the records of ``key`` and of what depends on it.

    ``snapshot`` (the resume's, see ``asyncflow._kernel.snapshot``) forgets
    them too: a deleted record never comes back from the pack.
    """
    keys = [t.key for t in tasks]
    over = {t.key: t.over for t in tasks if t.over is not None}
    stale = dependents(
        key,
        mode=mode,
        keys=keys,
        groups=[t.group_name for t in tasks],
        depends_on=graph_edges(keys, {t.key: t.depends_on for t in tasks}, over),
    )
    logger.info("%s: rerun_from %s re-runs %s", workflow_id, key, ", ".join(stale))
    maps = {t.key for t in tasks if t.kind == "map" and t.key in stale}
    stale_set = set(stale)

    def is_stale(name: str) -> bool:
        return name in stale_set or map_child(name, maps) is not None

    consumed = {name for name in stale if name in records}
    with anyio.CancelScope(shield=True):
        for name in stale:
            records.pop(name, None)
            where = task_storage_key(workflow_id, name)
            if snapshot is not None:
                snapshot.forget([where])
            await storage.delete(where)
        if maps:  # a map's children go with it
            prefix = task_prefix(workflow_id)
            for where in [n async for n in storage.list(prefix)]:
                child = where[len(prefix) : -len(".json")]
                if map_child(child, maps) is not None:
                    records.pop(child, None)
                    consumed.add(child)
                    if snapshot is not None:
                        snapshot.forget([where])
                    await storage.delete(where)
        await rearm_waits(storage, workflow_id, is_stale, consumed)  # so a wait asks again
    return stale
