"""Task records read for their timing, when ``run.json`` has no complete progress index.

A live run's ``run.json`` indexes the tasks that ended, so its page needs
no record. Records are still read for a run written before the index
existed, for a crashed run (the index may lag its last second), and for the
tasks beyond the index's cap: one listing, then each record not known yet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container

from asyncflow._core.concurrency import run_all
from asyncflow._core.errors import CheckpointCorrupt
from asyncflow._core.reading import Finished, Manifest, RecordTimes, record_times, task_prefix
from asyncflow._core.storage import Storage

__all__ = ["RecordCache", "from_record", "read_records", "run_identity"]

#: Records read at once.
CONCURRENCY = 32


class RecordCache:
    """Task records already read, per workflow and run, for the next page load.

    Within one run a task's record, once there, does not change: a task
    commits once per run, restoring never rewrites, and what a run
    invalidates it deletes before it starts. So a record seen during a run
    is kept until the listing no longer shows it or ``run.json`` names
    another run; a live page's poll then reads only the records that
    appeared since. At most ``workflows`` runs are kept (least recently
    used first out).
    """

    def __init__(self, workflows: int = 32) -> None:
        self.workflows = workflows
        self._runs: OrderedDict[str, tuple[object, dict[str, Finished]]] = OrderedDict()

    def known(self, workflow_id: str, run: object) -> dict[str, Finished]:
        found = self._runs.get(workflow_id)
        if found is None or found[0] != run:
            found = (run, {})
        self._runs[workflow_id] = found
        self._runs.move_to_end(workflow_id)
        while len(self._runs) > self.workflows:
            self._runs.popitem(last=False)
        return found[1]


def from_record(key: str, meta: RecordTimes) -> Finished:
    """A task with a record: it completed (or was restored) with these times."""
    return Finished(
        key, "completed", meta.attempts, meta.started_at, meta.finished_at, None, meta.step
    )


def run_identity(manifest: Manifest | None) -> object:
    """What tells one run from the next in ``run.json``: its run id (else its times)."""
    if manifest is None:
        return None
    return manifest.run_id or (manifest.created_at, manifest.updated_at)


async def read_records(
    storage: Storage,
    workflow_id: str,
    known: dict[str, Finished] | None = None,
    skip: Container[str] = (),
) -> tuple[dict[str, Finished], dict[str, str]]:
    """Every task record as a ``completed`` entry: one listing, then the records not
    ``known`` yet and not in ``skip`` (the keys the progress index already tells).

    ``known`` is updated in place: records gone from the listing leave it.
    The second mapping names each record that could not be parsed.
    """
    prefix = task_prefix(workflow_id)
    names = [name async for name in storage.list(prefix)]
    found = {
        name[len(prefix) : -len(".json")]: name
        for name in names
        if name.endswith(".json") and "/" not in name[len(prefix) :]
    }
    records = {} if known is None else known
    for gone in [key for key in records if key not in found]:
        del records[gone]
    problems: dict[str, str] = {}
    wanted = [(key, name) for key, name in found.items() if key not in records and key not in skip]
    pending = iter(wanted)

    async def worker() -> None:
        for key, name in pending:
            blob = await storage.read(name)
            if blob is None:
                continue
            try:
                records[key] = from_record(key, record_times(blob.data, name, workflow_id, key))
            except CheckpointCorrupt as exc:
                problems[key] = str(exc)

    if wanted:
        await run_all([worker] * min(CONCURRENCY, len(wanted)))
    return records, problems
