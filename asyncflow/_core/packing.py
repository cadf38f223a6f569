"""A run's records packed when it ends, and the snapshot its resume read them from.

``RunPack`` follows one run: ``load`` takes the snapshot a resume restores
from (``asyncflow._kernel.snapshot``: one listing of ``tasks/`` with
tokens, and the pack beside it), the committer keeps the bytes of every
record that landed (``Committer.landed``), and ``end`` writes the new pack
when the run ends: completed, failed, waiting or cancelled.

The pack is built from one listing made after the run's last write: each
record with the token that listing gives it, and bytes this run holds for
exactly that token: a record it wrote (only its runner writes a workflow's
records while it holds the lease), or one it read (from its key or the old
pack) whose token has not moved since. Anything else stays out and is read
from its own key by the next resume. A resume that restored everything from
a pack still current and wrote nothing rewrites nothing.

A pack is an extra copy: failing to write one leaves every record in place,
so it is logged, never raised over how the run ended.
"""

from __future__ import annotations

import logging

import anyio

from asyncflow._core.commit import Committer
from asyncflow._core.config import Config
from asyncflow._kernel.capabilities import Capabilities, list_versions
from asyncflow._kernel.layout import pack_key, task_key_of, task_prefix
from asyncflow._kernel.pack import PACK_MAX_BYTES, encode_pack
from asyncflow._kernel.snapshot import TaskSnapshot, take_snapshot
from asyncflow._kernel.storage import Storage

__all__ = ["RunPack", "write_pack"]

logger = logging.getLogger("asyncflow")


class RunPack:
    """One run's snapshot (when it resumes) and the pack it writes when it ends."""

    def __init__(self, config: Config, workflow_id: str) -> None:
        self.storage = config.storage
        self.workflow_id = workflow_id
        self.signing_key = config.signing_key
        self.min_records = config.pack_min_records
        self.lists_versions = Capabilities.of(self.storage).list_versions is not None
        self.snapshot: TaskSnapshot | None = None

    @property
    def enabled(self) -> bool:
        """Whether this run writes a pack when it ends."""
        return self.min_records is not None and self.lists_versions

    async def load(self) -> TaskSnapshot:
        """The snapshot a resume restores from (no tokens without ``list_versions``)."""
        self.snapshot = await take_snapshot(
            self.storage, self.workflow_id, signing_key=self.signing_key
        )
        return self.snapshot

    def watch(self, committer: Committer) -> None:
        """Have ``committer`` keep the bytes of the records that land, when packing."""
        if self.enabled:
            committer.landed = {}

    async def end(self, run_id: str, status: str, committer: Committer) -> None:
        """Pack the run's records, unless the pack is current already; shielded, never raises."""
        landed = committer.landed
        if not self.enabled or landed is None:
            return
        snapshot = self.snapshot
        if not landed and snapshot is not None and snapshot.pack_current:
            return
        assert self.min_records is not None
        with anyio.CancelScope(shield=True):
            try:
                await write_pack(
                    self.storage,
                    self.workflow_id,
                    run_id,
                    status,
                    landed=landed,
                    snapshot=snapshot,
                    signing_key=self.signing_key,
                    min_records=self.min_records,
                )
            except Exception as exc:
                logger.warning(
                    "%s: could not pack run %s's records (%r); they stay in place and the"
                    " next resume reads each one",
                    self.workflow_id,
                    run_id,
                    exc,
                )


async def write_pack(
    storage: Storage,
    workflow_id: str,
    run_id: str | None,
    status: str,
    *,
    landed: dict[str, bytes],
    snapshot: TaskSnapshot | None,
    signing_key: bytes | None,
    min_records: int = 1,
) -> int:
    """Write ``workflow_id``'s pack from one listing; returns how many records it holds.

    ``landed``: storage key -> bytes of the records the caller just wrote.
    ``snapshot``: what the caller read (its ``known`` records, its pack),
    used only where a token has not moved. Nothing is written (0) without
    ``list_versions``, below ``min_records`` or above ``PACK_MAX_BYTES``;
    the previous pack is then left as it is: its entries still prove
    themselves, or are not used.
    """
    tokens = await list_versions(storage, task_prefix(workflow_id))
    if tokens is None:
        return 0
    old = snapshot.pack.entries if snapshot is not None and snapshot.pack is not None else {}
    known = snapshot.known if snapshot is not None else {}
    entries: list[tuple[str, str, bytes]] = []
    size = 0
    for name, token in tokens.items():
        key = task_key_of(workflow_id, name)
        if key is None:
            continue
        data = landed.get(name)
        if data is None:
            held = known.get(name)
            if held is None or held[0] != token:
                held = old.get(key)
            if held is None or held[0] != token:
                continue
            data = held[1]
        entries.append((key, token, data))
        size += len(data)
    if len(entries) < min_records or size > PACK_MAX_BYTES:
        return 0
    await storage.write(
        pack_key(workflow_id), encode_pack(workflow_id, run_id, status, entries, signing_key)
    )
    return len(entries)
