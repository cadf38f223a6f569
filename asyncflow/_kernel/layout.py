"""The storage layout: the one place that knows which keys are asyncflow's.

Identical on every backend, relative to the backend's root (DESIGN §3)::

    {workflow_id}/run.json              latest run
    {workflow_id}/runs/{run_id}.json    one summary per start()
    {workflow_id}/lease.json            the live runner's lease
    {workflow_id}/tasks/{key}.json      one checkpoint record per completed task
    {workflow_id}/signals/{name}.json   a signal sent to the workflow
    {workflow_id}/waits/{key}.json      the armed durable wait of task {key} (asyncflow._core.waits)
    {workflow_id}/blobs/{sha256 hex}    a large output, content-addressed
    {workflow_id}/pack/tasks.pack       the task records of the last ended run, packed

Everything that deletes (``clear``, ``prune``, retention, a fresh run) asks
``is_own_key`` first, so a file that merely sits beside the records (an
``invoice.pdf``, a source tree someone pointed ``--storage`` at) is never
touched: it is not a record, whatever its name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from asyncflow._kernel.storage import Storage

__all__ = [
    "blob_key",
    "is_own_key",
    "lease_key",
    "manifest_key",
    "own_keys",
    "pack_key",
    "run_summary_key",
    "signal_key",
    "signal_prefix",
    "task_key_of",
    "task_prefix",
    "task_storage_key",
    "wait_key",
    "wait_prefix",
    "workflow_keys",
    "workflow_of_manifest",
]

# The alphabet of ``validate_id``: workflow ids, run ids, signal names.
_ID = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}"
# Task keys: the same alphabet, any length (a map child ``{key}.{index}`` of a
# 128-character key is longer than an id; the storage key's limit bounds it).
_KEY = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_OWN = re.compile(
    rf"(?:run\.json|lease\.json|tasks/(?P<task>{_KEY})\.json"
    rf"|runs/{_ID}\.json|signals/{_ID}\.json|waits/{_KEY}\.json|blobs/[0-9a-f]{{64}}"
    rf"|pack/{_ID}\.pack)"
)
_WORKFLOW = re.compile(_ID)


def manifest_key(workflow_id: str) -> str:
    return f"{workflow_id}/run.json"


def lease_key(workflow_id: str) -> str:
    return f"{workflow_id}/lease.json"


def task_prefix(workflow_id: str) -> str:
    return f"{workflow_id}/tasks/"


def task_storage_key(workflow_id: str, key: str) -> str:
    return f"{workflow_id}/tasks/{key}.json"


def run_summary_key(workflow_id: str, run_id: str) -> str:
    return f"{workflow_id}/runs/{run_id}.json"


def signal_key(workflow_id: str, name: str) -> str:
    return f"{workflow_id}/signals/{name}.json"


def signal_prefix(workflow_id: str) -> str:
    return f"{workflow_id}/signals/"


def wait_key(workflow_id: str, key: str) -> str:
    return f"{workflow_id}/waits/{key}.json"


def wait_prefix(workflow_id: str) -> str:
    return f"{workflow_id}/waits/"


def blob_key(workflow_id: str, sha256: str) -> str:
    return f"{workflow_id}/blobs/{sha256}"


def pack_key(workflow_id: str) -> str:
    """The one pack of a workflow (``asyncflow._kernel.pack``): rewritten, never added to."""
    return f"{workflow_id}/pack/tasks.pack"


def _rest(workflow_id: str, key: str) -> str | None:
    head = f"{workflow_id}/"
    return key[len(head) :] if key.startswith(head) else None


def is_own_key(workflow_id: str, key: str) -> bool:
    """Whether ``key`` is one of the layout's records of ``workflow_id``.

    Exact: ``nightly.v2/run.json`` is not ``nightly``'s, ``wf/tasks/a.txt``
    and ``wf/tasks/sub/a.json`` are nobody's.
    """
    rest = _rest(workflow_id, key)
    return rest is not None and _OWN.fullmatch(rest) is not None


def task_key_of(workflow_id: str, key: str) -> str | None:
    """The task key of a checkpoint record's storage key, or None if ``key`` is not one."""
    rest = _rest(workflow_id, key)
    match = _OWN.fullmatch(rest) if rest is not None else None
    return match.group("task") if match is not None else None


def workflow_of_manifest(key: str) -> str | None:
    """The workflow id whose ``run.json`` is ``key``, or None if ``key`` is not a manifest."""
    head, sep, tail = key.partition("/")
    if sep and tail == "run.json" and _WORKFLOW.fullmatch(head) is not None:
        return head
    return None


def own_keys(
    workflow_id: str,
    names: Iterable[str],
    *,
    tasks_only: bool = False,
    include_lease: bool = False,
) -> list[str]:
    """The names among ``names`` that are ``workflow_id``'s records.

    ``tasks_only``: only checkpoint records. The lease is left out unless
    ``include_lease``: it belongs to whoever runs the workflow.
    """
    lease = lease_key(workflow_id)
    if tasks_only:
        return [n for n in names if task_key_of(workflow_id, n) is not None]
    return [n for n in names if is_own_key(workflow_id, n) and (include_lease or n != lease)]


async def workflow_keys(
    storage: Storage,
    workflow_id: str,
    *,
    tasks_only: bool = False,
    include_lease: bool = False,
) -> list[str]:
    """One listing of ``workflow_id``'s own records in ``storage`` (see ``own_keys``)."""
    prefix = task_prefix(workflow_id) if tasks_only else f"{workflow_id}/"
    names = [name async for name in storage.list(prefix)]
    return own_keys(workflow_id, names, tasks_only=tasks_only, include_lease=include_lease)
