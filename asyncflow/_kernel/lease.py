"""One runner per workflow: a lease record taken with a conditional write.

``{workflow_id}/lease.json`` names the runner that may commit checkpoints.
It is created with ``if_absent`` or taken over with ``if_version`` (a
compare-and-swap), so of two runners racing for it exactly one wins. The
holder renews it every ``renew_every`` seconds; it expires ``ttl`` seconds
after the last renewal. A runner that cannot renew in time, or finds that
the record changed under it, has lost the lease and stops before committing
another checkpoint.

A crashed runner's lease would block a resume for up to ``ttl``. So when
the holder ran on this host (same hostname and boot id) and its process is
gone (pid plus the process start time, so a reused pid does not fool it),
the lease is taken over at once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass

import anyio

from asyncflow._kernel.errors import (
    CheckpointCorrupt,
    LeaseLost,
    PreconditionFailed,
    StorageError,
    WorkflowLocked,
)
from asyncflow._kernel.layout import lease_key
from asyncflow._kernel.storage import Storage

__all__ = ["Lease", "LeaseRecord", "lease_key", "process_identity"]

logger = logging.getLogger("asyncflow")


#: ``Lease.ensure`` re-reads the clock at least this often (seconds).
_FAST_CHECK = 0.05


_identity: tuple[str, str, int, str] | None = None


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), or "" if unknown/gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def process_identity() -> tuple[str, str, int, str]:
    """(host, boot id, pid, pid start time) of this process.

    Cached per pid (a forked child finds out anew): reading ``/proc`` twice
    per lease write was most of the fixed cost of a short in-memory run.
    """
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[2] != pid:
        _identity = (socket.gethostname(), _boot_id(), pid, _start_time(pid))
    return _identity


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    workflow_id: str
    runner_id: str
    host: str
    boot_id: str
    pid: int
    pid_start: str
    generation: int
    acquired_at: float
    expires_at: float
    released: bool = False

    def encode(self) -> bytes:
        # Not dataclasses.asdict: its deep copy of every field was a tenth of
        # the fixed cost of a short in-memory run (two lease writes per run).
        fields = {name: getattr(self, name) for name in LeaseRecord.__slots__}
        return json.dumps({"asyncflow": 1, "kind": "lease", **fields}).encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> LeaseRecord:
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or raw.get("kind") != "lease":
                raise ValueError("not an asyncflow lease")
            raw.pop("asyncflow", None)
            raw.pop("kind", None)
            record = cls(**raw)
            if type(record.generation) is not int or not isinstance(record.expires_at, float):
                raise ValueError("bad generation or expiry")
            return record
        except (ValueError, TypeError) as exc:
            raise CheckpointCorrupt(f"{where} is not a valid lease: {exc}", key=where) from exc

    def holder_is_dead_here(self) -> bool:
        """True only when we can prove the holder was on this machine and is gone."""
        host, boot, _, _ = process_identity()
        if self.host != host or not boot or not self.boot_id:
            return False
        if self.boot_id != boot:
            return True  # the machine rebooted since: every process of then is gone
        if sys.platform != "linux" or not self.pid_start:
            return False
        return _start_time(self.pid) != self.pid_start

    def describe(self) -> str:
        return f"runner {self.runner_id} (host {self.host}, pid {self.pid})"


class Lease:
    """This runner's hold on one workflow id."""

    def __init__(
        self, storage: Storage, workflow_id: str, *, ttl: float, renew_every: float
    ) -> None:
        self.storage = storage
        self.workflow_id = workflow_id
        self.key = lease_key(workflow_id)
        self.ttl = ttl
        self.renew_every = renew_every
        self.runner_id = uuid.uuid4().hex
        self.record: LeaseRecord | None = None
        self.version: str | None = None
        self.valid_until = 0.0
        self.lost: str | None = None
        self._checked_until = 0.0  # time.monotonic() until which ensure() may skip the clock

    def _record(self, generation: int, *, released: bool = False) -> LeaseRecord:
        host, boot, pid, start = process_identity()
        now = time.time()
        return LeaseRecord(
            workflow_id=self.workflow_id,
            runner_id=self.runner_id,
            host=host,
            boot_id=boot,
            pid=pid,
            pid_start=start,
            generation=generation,
            acquired_at=self.record.acquired_at if self.record else now,
            expires_at=now if released else now + self.ttl,
            released=released,
        )

    async def acquire(self, wait: bool | float = False) -> None:
        """Take the lease, or raise ``WorkflowLocked`` (after waiting up to ``wait`` s)."""
        deadline = None
        if wait is not False:
            deadline = float("inf") if wait is True else anyio.current_time() + float(wait)
        while True:
            holder = await self._try_acquire()
            if holder is None:
                return
            now = anyio.current_time()
            if deadline is None or now >= deadline:
                expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(holder.expires_at))
                raise WorkflowLocked(
                    f"workflow {self.workflow_id} is being run by {holder.describe()};"
                    f" its lease expires at {expiry} unless renewed"
                    " (start(wait_for_lease=...) waits for it)"
                )
            pause = max(0.05, min(holder.expires_at - time.time(), self.renew_every, 1.0))
            await anyio.sleep(min(pause, deadline - now))

    async def _try_acquire(self) -> LeaseRecord | None:
        """None if we now hold the lease, else the live holder's record."""
        blob = await self.storage.read(self.key)
        try:
            if blob is None:
                mine = self._record(1)
                started = anyio.current_time()
                self.version = await self.storage.write(self.key, mine.encode(), if_absent=True)
            else:
                current = LeaseRecord.decode(blob.data, self.key)
                live = not current.released and current.expires_at > time.time()
                if live and not current.holder_is_dead_here():
                    return current
                if live:
                    logger.warning(
                        "%s: taking over the lease of %s, whose process is gone",
                        self.workflow_id,
                        current.describe(),
                    )
                mine = self._record(current.generation + 1)
                started = anyio.current_time()
                self.version = await self.storage.write(
                    self.key, mine.encode(), if_version=blob.version
                )
        except PreconditionFailed:
            blob = await self.storage.read(self.key)
            if blob is None:
                return await self._try_acquire()
            return LeaseRecord.decode(blob.data, self.key)
        self.record = mine
        self.valid_until = started + self.ttl
        self.lost = None
        return None

    async def renew(self, *, adopt: bool = True) -> None:
        """Extend the lease; mark it lost if someone else changed it or it ran out."""
        if self.record is None or self.lost:
            return
        mine = self._record(self.record.generation)
        started = anyio.current_time()
        try:
            with anyio.CancelScope(shield=True):
                self.version = await self.storage.write(
                    self.key, mine.encode(), if_version=self.version
                )
        except PreconditionFailed:
            if adopt and await self._still_mine():
                await self.renew(adopt=False)
                return
            self.lost = "the lease record was changed by another runner"
            return
        except StorageError as exc:
            logger.warning("%s: lease renewal failed (%s); will retry", self.workflow_id, exc)
            if anyio.current_time() >= self.valid_until:
                self.lost = f"the lease expired while renewals failed: {exc}"
            return
        self.record = mine
        self.valid_until = started + self.ttl

    async def _still_mine(self) -> bool:
        """After a lost compare-and-swap: was it only our own earlier write landing?

        A renewal whose answer was lost (timeout, dropped connection) may have
        been applied; the stored record then is ours, with a version we never
        saw. Adopt it instead of reporting the lease lost.
        """
        blob = await self.storage.read(self.key)
        if blob is None or self.record is None:
            return False
        current = LeaseRecord.decode(blob.data, self.key)
        if current.runner_id != self.runner_id or current.generation != self.record.generation:
            return False
        if current.released:
            return False
        self.version = blob.version
        return True

    def ensure(self) -> None:
        """Raise ``LeaseLost`` unless the lease is surely still ours (called before a commit)."""
        if self.lost is None and time.monotonic() < self._checked_until:
            # Checked less than _FAST_CHECK ago with time to spare: reading the
            # event loop's clock through anyio was ~10% of an in-memory step.
            return
        margin = min(self.renew_every, self.ttl / 10)
        now = anyio.current_time()
        if self.lost is None and now >= self.valid_until - margin:
            self.lost = "the lease was not renewed in time"
        if self.lost is not None:
            raise LeaseLost(f"workflow {self.workflow_id}: {self.lost}; stopped before committing")
        spare = min(self.valid_until - margin - now, _FAST_CHECK)
        self._checked_until = time.monotonic() + spare

    async def heartbeat(self, on_lost: anyio.CancelScope) -> None:
        """Renew until cancelled; cancel ``on_lost`` as soon as the lease is lost."""
        while True:
            await anyio.sleep(self.renew_every)
            try:
                await self.renew()
            except Exception as exc:
                self.lost = f"renewing the lease failed: {exc!r}"
            if self.lost is not None:
                logger.error("%s: lease lost: %s", self.workflow_id, self.lost)
                on_lost.cancel()
                return

    async def release_after(self, first: BaseException | None) -> None:
        """``release``, in a ``finally`` that may already be unwinding ``first``.

        The first failure is the one the caller sees: a release that fails
        too is logged and noted on ``first`` instead of replacing it.
        """
        try:
            await self.release()
        except Exception as exc:
            if first is None:
                raise
            logger.warning("%s: releasing the lease failed too: %r", self.workflow_id, exc)
            note = getattr(first, "add_note", None)  # Python 3.11+
            if note is not None:
                note(f"releasing the lease of {self.workflow_id} also failed: {exc!r}")

    async def release(self) -> None:
        """Mark the lease released (a compare-and-swap, so a new holder is never disturbed)."""
        if self.record is None or self.lost is not None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self.storage.write(
                    self.key,
                    self._record(self.record.generation, released=True).encode(),
                    if_version=self.version,
                )
            except PreconditionFailed:
                pass
            finally:
                self.record = None
