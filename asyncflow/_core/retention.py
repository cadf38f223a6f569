"""Retention: delete the records of workflows whose latest run ended long ago.

``await prune(storage, older_than="7d")`` deletes every workflow whose
``run.json`` says its latest run ended (``completed``, ``failed``,
``cancelled``, or ``forked``/``reset`` and never run since) and was last updated
before ``now - older_than``. It lists the storage once (``list(prefix)``,
``""`` = everything), then for each candidate takes the workflow's lease
as a runner would (so no run can start meanwhile, and a workflow with a
live lease is never touched), re-reads
``run.json`` to confirm, deletes the task records, then ``run.json``, then
the lease. Interrupted runs (``run.json`` still says ``running``, no live
lease: a crash) are kept unless ``include_interrupted=True``, because they
are what a resume needs. Run history goes with its workflow; of a workflow
that is kept, the run summaries (``runs/{run_id}.json``) of runs started
before the cutoff are deleted, but never the latest run's. A ``run.json``
that cannot be decoded is kept and logged: nothing unreadable is deleted.

``Config(retention=...)`` is applied by the scheduler after each run, to
that schedule's own workflows (its id and the ``{id}.{tick}`` ids of
``parallel`` runs); ``asyncflow clear --older-than`` and ``prune`` apply a
retention by hand. ``flow.start()`` itself never prunes: a run's cost must
not grow with the number of workflows in the storage.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from asyncflow._core.clearing import delete_workflow
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.durations import parse_duration
from asyncflow._kernel.errors import CheckpointCorrupt, WorkflowLocked
from asyncflow._kernel.layout import manifest_key, own_keys, workflow_of_manifest
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.storage import Storage
from asyncflow._kernel.summary import new_run_id, runs_prefix
from asyncflow.reading import read_lease

__all__ = ["FINISHED", "Pruned", "prune", "prune_schedule"]

logger = logging.getLogger("asyncflow")

FINISHED = ("completed", "failed", "cancelled", "forked", "reset")


@dataclass(frozen=True, slots=True)
class Pruned:
    """A workflow that was (or, in a dry run, would be) deleted."""

    workflow_id: str
    status: str
    updated_at: float
    records: int


async def _manifest(storage: Storage, workflow_id: str) -> Manifest | None:
    where = manifest_key(workflow_id)
    blob = await storage.read(where)
    if blob is None:
        return None
    try:
        return Manifest.decode(blob.data, where)
    except CheckpointCorrupt as exc:
        logger.warning("%s: kept by retention: %s", workflow_id, exc)
        return None


async def prune(
    storage: Storage,
    older_than: float | dt.timedelta | str,
    *,
    prefix: str = "",
    only: Callable[[str], bool] | None = None,
    include_interrupted: bool = False,
    dry_run: bool = False,
    now: float | None = None,
    concurrency: int = 8,
) -> list[Pruned]:
    """Delete the workflows (under ``prefix``, passing ``only``) whose run ended before the cutoff.

    Returns what was deleted (``dry_run``: what would be, nothing is written)
    in workflow-id order. See the module docstring for the guarantees.
    """
    cutoff = (time.time() if now is None else now) - parse_duration(older_than)
    statuses = (*FINISHED, "running") if include_interrupted else FINISHED
    names = [key async for key in storage.list(prefix)]
    candidates = [
        wid
        for wid in (workflow_of_manifest(key) for key in names)
        if wid is not None and (only is None or only(wid))
    ]
    found: dict[str, Pruned] = {}

    def eligible(manifest: Manifest | None) -> bool:
        return manifest is not None and manifest.status in statuses and manifest.updated_at < cutoff

    oldest_kept = new_run_id(cutoff)

    def old_runs(workflow_id: str, current: str | None) -> list[str]:
        head = runs_prefix(workflow_id)
        return [
            key
            for key in names
            if key.startswith(head)
            and key[len(head) :] < oldest_kept
            and key[len(head) : -len(".json")] != current
        ]

    async def consider(workflow_id: str) -> None:
        manifest = await _manifest(storage, workflow_id)
        if manifest is not None and not eligible(manifest) and not dry_run:
            # a workflow still in use keeps its recent history; older runs go
            for key in old_runs(workflow_id, manifest.run_id):
                await storage.delete(key)
        if manifest is None or not eligible(manifest):
            return
        records = len(own_keys(workflow_id, names))
        if dry_run:
            state = await read_lease(storage, workflow_id)
            if state is None or not state.live:
                found[workflow_id] = Pruned(
                    workflow_id, manifest.status, manifest.updated_at, records
                )
            return

        async def still_eligible() -> bool:  # a run may have started or ended meanwhile
            return eligible(await _manifest(storage, workflow_id))

        try:
            deleted = await delete_workflow(storage, workflow_id, still=still_eligible)
        except WorkflowLocked:
            logger.info("%s: kept by retention: a runner holds its lease", workflow_id)
            return
        if deleted is None:
            return  # a run started (or ended anew) meanwhile
        found[workflow_id] = Pruned(workflow_id, manifest.status, manifest.updated_at, records)
        logger.info(
            "%s: deleted by retention (%s, updated %s)",
            workflow_id,
            manifest.status,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(manifest.updated_at)),
        )

    pending = iter(candidates)

    async def worker() -> None:
        for workflow_id in pending:
            await consider(workflow_id)

    if candidates:
        await run_all([worker] * min(concurrency, len(candidates)))
    return [found[wid] for wid in sorted(found)]


async def prune_schedule(
    storage: Storage, older_than: float, base: str, owns: Callable[[str], bool]
) -> None:
    """A schedule's retention after each run: its own old workflows; a failure is only logged.

    The schedule must go on ticking whatever storage does here, and the
    next run's retention tries again.
    """
    try:
        await prune(
            storage,
            older_than,
            prefix=base,
            only=owns,
        )  # wall time, not the clock's: run.json timestamps are wall time
    except Exception:
        logger.exception("%s: retention failed; it is tried again after the next run", base)
