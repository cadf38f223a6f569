"""What tools that only look at storage read: the run viewer's and ``asyncflow status``'s API.

One place for readers outside the engine: ``run.json`` and its progress
index, the lease, run summaries and the history of runs, the workflows of a
storage, and a task record's metadata (never its decoded output). Nothing
here writes, runs a step, needs a serializer or verifies a signature.
"""

from __future__ import annotations

from asyncflow._core.blobs import parse_ref
from asyncflow._core.checkpoint import FORMAT_BLOB, SIG_PREFIX, CheckpointRecord
from asyncflow._core.codec import loads
from asyncflow._core.history import (
    WorkflowInfo,
    list_workflows,
    read_summary,
    run_history,
    workflow_ids,
)
from asyncflow._core.layout import manifest_key, run_summary_key, task_prefix, task_storage_key
from asyncflow._core.manifest import Manifest
from asyncflow._core.metadata import RecordTimes, record_meta, record_times
from asyncflow._core.progress import PROGRESS_CAP, Finished, RunProgress, progress_of
from asyncflow._core.shape import RunShape
from asyncflow._core.status import LeaseState, RunState, read_lease, read_run, seen_status
from asyncflow._core.storage import Storage
from asyncflow._core.summary import ErrorInfo, RunSummary, TaskRun, runs_prefix

__all__ = [
    "FORMAT_BLOB",
    "PROGRESS_CAP",
    "SIG_PREFIX",
    "CheckpointRecord",
    "ErrorInfo",
    "Finished",
    "LeaseState",
    "Manifest",
    "RecordTimes",
    "RunProgress",
    "RunShape",
    "RunState",
    "RunSummary",
    "TaskRun",
    "WorkflowInfo",
    "list_workflows",
    "loads",
    "manifest_key",
    "parse_ref",
    "progress_of",
    "read_lease",
    "read_manifest",
    "read_run",
    "read_summary",
    "record_meta",
    "record_times",
    "run_history",
    "run_summary_key",
    "runs_prefix",
    "seen_status",
    "shape_of",
    "task_prefix",
    "task_storage_key",
    "workflow_ids",
]


async def read_manifest(storage: Storage, workflow_id: str) -> Manifest | None:
    """``run.json``, or ``None`` if there is none; ``CheckpointCorrupt`` if malformed."""
    where = manifest_key(workflow_id)
    blob = await storage.read(where)
    return None if blob is None else Manifest.decode(blob.data, where)


def shape_of(manifest: Manifest) -> RunShape:
    """The graph ``run.json`` records for the latest run."""
    return RunShape(manifest.depends_on, manifest.kinds, manifest.over, manifest.children)
