"""The read model: what storage says about workflows and their runs, read without running anything.

``asyncflow status``, the run viewer and the worker's scan read runs
through this package; so can your own dashboards and alerts. Everything
here only reads: no step runs, no serializer decodes an output (a pickled
output is never unpickled), no signing key is needed (a signature is
reported, not verified), and nothing is written.

What a read costs (see docs/reading.md):

* ``list_workflows(storage)``: one listing of the storage root and one read
  of each workflow's ``run.json``; never a task record.
* ``read_run(storage, id)``: a live run is ``run.json`` plus its lease;
  records are read only where ``run.json``'s progress index cannot tell.
* ``read_latest(storage, id)``: an ended run from its summary (one read).
* ``run_history(storage, id)`` / ``read_history(...)``: one listing of
  ``runs/`` and the summaries asked for.

Statuses are the words storage keeps (``completed``, ``failed``,
``skipped`` = restored from a checkpoint, ``waiting``, ``cancelled``,
``not run``, and for a live run ``running`` / ``pending``); a run that says
``running`` with no live lease is ``crashed`` (``seen_status``). Frozen
dataclasses throughout; bad records raise ``CheckpointCorrupt`` naming
their key, or mark the one task they belong to.

This package imports only asyncflow's storage kernel (errors, ids, layout,
codec, record formats), never the engine that runs flows.
"""

from asyncflow._kernel.checkpoint import CheckpointRecord
from asyncflow._kernel.durations import parse_duration
from asyncflow._kernel.ids import validate_id
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.outcomes import OUTCOMES, Outcome
from asyncflow._kernel.public import publish
from asyncflow._kernel.shape import RunShape, close_matches
from asyncflow._kernel.summary import ErrorInfo, RunSummary, TaskRun
from asyncflow.reading._history import (
    HistoryPage,
    RunRow,
    read_history,
    read_latest,
    read_past_run,
    read_summary,
    run_history,
    with_summary_error,
)
from asyncflow.reading._keys import child_key, map_child
from asyncflow.reading._leases import LeaseState, live_run_id, read_lease, seen_status
from asyncflow.reading._output import OutputPreview, output_preview
from asyncflow.reading._progress import PROGRESS_CAP, Finished, RunProgress, progress_of
from asyncflow.reading._records import RecordCache, RecordTimes, record_meta, record_times
from asyncflow.reading._runs import (
    LIVE,
    RunState,
    TaskDetail,
    read_manifest,
    read_run,
    read_task,
)
from asyncflow.reading._tasks import TaskState, WaitState, shape_of
from asyncflow.reading._workflows import WorkflowInfo, list_workflows, workflow_ids

__all__ = [
    "LIVE",
    "OUTCOMES",
    "PROGRESS_CAP",
    "CheckpointRecord",
    "ErrorInfo",
    "Finished",
    "HistoryPage",
    "LeaseState",
    "Manifest",
    "Outcome",
    "OutputPreview",
    "RecordCache",
    "RecordTimes",
    "RunProgress",
    "RunRow",
    "RunShape",
    "RunState",
    "RunSummary",
    "TaskDetail",
    "TaskRun",
    "TaskState",
    "WaitState",
    "WorkflowInfo",
    "child_key",
    "close_matches",
    "list_workflows",
    "live_run_id",
    "map_child",
    "output_preview",
    "parse_duration",
    "progress_of",
    "read_history",
    "read_latest",
    "read_lease",
    "read_manifest",
    "read_past_run",
    "read_run",
    "read_summary",
    "read_task",
    "record_meta",
    "record_times",
    "run_history",
    "seen_status",
    "shape_of",
    "validate_id",
    "with_summary_error",
    "workflow_ids",
]

publish(__name__, globals())
