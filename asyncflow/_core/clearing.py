"""Deleting a workflow: under its lease, its own records only, children first.

``asyncflow.clear`` (and ``asyncflow clear ID``) and retention both go
through ``delete_workflow``: take the workflow's lease as a runner would (so
no run can start meanwhile, and a live runner makes it refuse), delete the
layout's records with ``run.json`` last, then the lease, then tidy what the
backend keeps beside them (lock files, empty folders). A parent's child
flows go first, so an interrupted clear leaves the parent to be found and
cleared again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asyncflow._core.records import clear_workflow
from asyncflow._core.subflow import child_workflows
from asyncflow._kernel.capabilities import Capabilities
from asyncflow._kernel.layout import lease_key, manifest_key, workflow_keys
from asyncflow._kernel.lease import Lease
from asyncflow._kernel.storage import Storage

__all__ = ["Cleared", "clear", "delete_workflow"]

logger = logging.getLogger("asyncflow")

#: How long a clear holds a workflow's lease (it renews nothing: deleting is quick).
_TTL = 60.0


@dataclass(frozen=True, slots=True)
class Cleared:
    """What ``clear`` deleted (with ``dry_run``: would delete)."""

    workflow_id: str
    #: Its child flows, deepest last (they are deleted first).
    children: tuple[str, ...]
    #: Records of the workflow and its children.
    records: int


async def delete_workflow(
    storage: Storage,
    workflow_id: str,
    *,
    force: bool = False,
    still: Callable[[], Awaitable[bool]] | None = None,
) -> int | None:
    """Delete ``workflow_id``'s own records under its lease; how many, or None if ``still``
    (awaited under the lease: is it still to be deleted?) said no.

    ``WorkflowLocked`` when a live runner holds the lease, unless ``force``
    (the runner then fails its next renewal).
    """
    lease = None if force else Lease(storage, workflow_id, ttl=_TTL, renew_every=_TTL / 3)
    if lease is not None:
        await lease.acquire()
    deleted: int | None = None
    failure: BaseException | None = None
    try:
        if still is not None and not await still():
            return None
        deleted = await clear_workflow(storage, workflow_id)
        await storage.delete(lease_key(workflow_id))
    except BaseException as exc:
        failure = exc
        raise
    finally:
        if deleted is None and lease is not None:
            await lease.release_after(failure)
    tidy = Capabilities.of(storage).tidy  # StorageFile: lock files, empty folders
    if tidy is not None:
        await tidy(f"{workflow_id}/")
    return deleted


async def clear(
    storage: Storage, workflow_id: str, *, force: bool = False, dry_run: bool = False
) -> Cleared | None:
    """Delete a workflow's records and its child flows'; ``None`` if it has no ``run.json``.

    Only the layout's keys are touched (a file beside the records stays).
    ``dry_run`` counts and deletes nothing.
    """
    if await storage.read(manifest_key(workflow_id)) is None:
        return None
    children = tuple(await child_workflows(storage, workflow_id))
    if dry_run:
        records = 0
        for each in (workflow_id, *children):
            records += len(await workflow_keys(storage, each))
        return Cleared(workflow_id, children, records)
    records = 0
    for each in (*reversed(children), workflow_id):
        records += await delete_workflow(storage, each, force=force) or 0
    logger.info("%s: cleared (%d record(s), %d child flow(s))", workflow_id, records, len(children))
    return Cleared(workflow_id, children, records)
