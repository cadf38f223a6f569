"""A workflow's task records as one listing and its pack say they are.

A resume (and a reader) takes one snapshot: one listing of ``tasks/`` with
each record's token (``list_versions``) and, beside it, the pack
(``asyncflow._kernel.pack``). A record is then taken from the pack only
while the listing gives it the token the pack recorded: provably the same
bytes (DESIGN §15). A record the pack lacks, or whose token moved (a later
run rewrote it, ``reset`` deleted it, someone edited it), is read from its
own key; a record the listing lacks does not exist.

Without ``list_versions`` nothing proves a packed copy current: the
snapshot has no tokens and callers read every record, as before packs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from asyncflow._kernel.capabilities import Capabilities, list_versions, read_many
from asyncflow._kernel.concurrency import run_all
from asyncflow._kernel.layout import pack_key, task_key_of, task_prefix
from asyncflow._kernel.pack import Pack, decode_pack
from asyncflow._kernel.storage import Storage

__all__ = ["TaskSnapshot", "add_pack", "read_tasks", "take_snapshot"]


@dataclass(slots=True)
class TaskSnapshot:
    """One listing of a workflow's ``tasks/`` with tokens, and its pack as it was read.

    ``tokens``: storage key -> token, ``None`` when the storage cannot list
    them. ``known``: the records read so far (from the pack or their keys),
    storage key -> (the listing's token, bytes): what the run's own pack is
    built from when the run ends. ``forgotten``: records were deleted since
    (``rerun_from``), so the pack no longer matches the store.
    """

    workflow_id: str
    tokens: dict[str, str] | None
    pack: Pack | None = None
    known: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    forgotten: bool = False

    def packed(self, name: str) -> bytes | None:
        """The pack's copy of record ``name`` if the listing proves it current, else ``None``."""
        if self.pack is None or self.tokens is None:
            return None
        token = self.tokens.get(name)
        key = task_key_of(self.workflow_id, name)
        entry = self.pack.entries.get(key) if key is not None and token is not None else None
        return entry[1] if entry is not None and entry[0] == token else None

    @property
    def pack_current(self) -> bool:
        """Whether the pack holds every listed record, each at its listed token, and no other."""
        if self.pack is None or self.tokens is None or self.forgotten:
            return False
        listed = 0
        entries = self.pack.entries
        for name, token in self.tokens.items():
            key = task_key_of(self.workflow_id, name)
            if key is None:
                continue
            listed += 1
            entry = entries.get(key)
            if entry is None or entry[0] != token:
                return False
        return listed == len(entries)

    def forget(self, names: Iterable[str]) -> None:
        """Records deleted since the listing (``rerun_from``): never taken from the pack again."""
        for name in names:
            self.forgotten = True
            if self.tokens is not None:
                self.tokens.pop(name, None)
            self.known.pop(name, None)


async def take_snapshot(
    storage: Storage,
    workflow_id: str,
    *,
    signing_key: bytes | None,
    check_signature: bool = True,
    with_pack: bool = True,
) -> TaskSnapshot:
    """One listing of ``tasks/`` with tokens, and the pack read beside it (one round trip).

    ``CheckpointCorrupt`` names the pack when it is torn or altered (see
    ``decode_pack``); a pack of a newer format is left unused.
    ``with_pack=False``: the listing alone (``add_pack`` reads the pack later,
    for a reader that may need no record at all).
    """
    if Capabilities.of(storage).list_versions is None:
        return TaskSnapshot(workflow_id, None)
    tokens: dict[str, str] | None = None
    snapshot = TaskSnapshot(workflow_id, None)

    async def listing() -> None:
        nonlocal tokens
        tokens = await list_versions(storage, task_prefix(workflow_id))

    async def pack() -> None:
        await add_pack(storage, snapshot, signing_key=signing_key, check_signature=check_signature)

    await run_all([listing, pack] if with_pack else [listing])
    snapshot.tokens = tokens
    return snapshot


async def add_pack(
    storage: Storage,
    snapshot: TaskSnapshot,
    *,
    signing_key: bytes | None,
    check_signature: bool = True,
) -> None:
    """Read the workflow's pack into ``snapshot`` (none there: ``pack`` stays ``None``)."""
    where = pack_key(snapshot.workflow_id)
    blob = await storage.read(where)
    if blob is not None:
        snapshot.pack = decode_pack(
            blob.data, where, snapshot.workflow_id, signing_key, check_signature=check_signature
        )


async def read_tasks(
    storage: Storage, snapshot: TaskSnapshot, names: list[str], *, concurrency: int
) -> list[bytes | None]:
    """The bytes of each record in ``names`` (storage keys), ``None`` where there is none.

    From the pack where the listing proves its copy current; the others are
    read from their keys (``read_many``): those listed, and on a storage
    with ``read_many`` (files) those not listed too, so that a directory or
    a FIFO where a record should be is refused by the read instead of
    passing for "no checkpoint". Each one found joins ``snapshot.known``.
    """
    tokens = snapshot.tokens
    assert tokens is not None, "read_tasks needs a snapshot with tokens"
    found: list[bytes | None] = [None] * len(names)
    wanted: list[int] = []
    every = Capabilities.of(storage).read_many is not None
    for index, name in enumerate(names):
        data = snapshot.packed(name)
        if data is not None:
            found[index] = data
            snapshot.known[name] = (tokens[name], data)
        elif every or name in tokens:
            wanted.append(index)
    if wanted:
        blobs = await read_many(storage, [names[i] for i in wanted], concurrency=concurrency)
        for index, blob in zip(wanted, blobs, strict=True):
            if blob is None:
                continue
            name = names[index]
            found[index] = blob.data
            token = tokens.get(name)
            if token is not None:
                snapshot.known[name] = (token, blob.data)
    return found
