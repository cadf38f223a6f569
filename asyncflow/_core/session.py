"""One run of a flow, from taking the lease to the final ``run.json``.

``AsyncFlow.start`` owns what a caller sees (the cancel scope, events,
callbacks, ``raise_on_failure``); a ``RunSession`` owns what storage sees:
the lease and its heartbeat, preparing the run (``prepare``), the runner
and its mode, the live ``run.json`` and the run summary (``runs``), the
blobs the run made stale, and how the run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence

import anyio

from asyncflow._core.bus import EventBus
from asyncflow._core.config import Config
from asyncflow._core.context import Context
from asyncflow._core.modes import MODES
from asyncflow._core.packing import RunPack
from asyncflow._core.prepare import prepare_run
from asyncflow._core.run_options import RunOptions
from asyncflow._core.runner import Runner
from asyncflow._core.runs import RunRecorder
from asyncflow._core.subflow import PARENT, Parent, check_children
from asyncflow._core.task import Task, TaskStatus
from asyncflow._core.waits import due_at
from asyncflow._kernel.blobs import collect_garbage
from asyncflow._kernel.concurrency import run_beside
from asyncflow._kernel.errors import LeaseLost
from asyncflow._kernel.lease import Lease
from asyncflow._kernel.manifest import Manifest

__all__ = ["RunSession"]


async def _with_heartbeat(lease: Lease, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` while the lease is renewed; raise ``LeaseLost`` if it is lost.

    Losing the lease cancels the body at once; the checkpoint about to be
    committed is refused by ``Lease.ensure`` in any case.
    """
    with contextlib.suppress(LeaseLost):  # raised by ensure() below, once the heartbeat stopped
        await run_beside(body, lease.heartbeat)
    lease.ensure()


def _with_children(manifest: Manifest, tasks: Sequence[Task]) -> Manifest:
    """The manifest with each map's recorded expansion (its number of children)."""
    children = {t.key: t.children for t in tasks if t.children is not None}
    return dataclasses.replace(manifest, children=children) if children else manifest


class RunSession:
    """The storage side of one ``start()``: ``run()``, then ``end()`` or ``end_after(exc)``."""

    def __init__(
        self,
        *,
        workflow_id: str,
        config: Config,
        bus: EventBus,
        tasks: list[Task],
        run_id: str,
        options: RunOptions,
        first_input: Context | None,
        first_digest: str | None,
        parent: str | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.config = config
        self.bus = bus
        self.tasks = tasks
        self.options = options
        self.first_input = first_input
        self.first_digest = first_digest
        self.parent = parent
        self.lease = Lease(
            config.storage, workflow_id, ttl=config.lease_ttl, renew_every=config.lease_renew_every
        )
        self.recorder = RunRecorder(
            config.storage,
            workflow_id,
            run_id,
            options.mode,
            options.resume,
            rerun_from=options.rerun_from,
        )
        self.manifest: Manifest | None = None
        self.runner: Runner | None = None
        self.pack = RunPack(config, workflow_id)

    async def run(self) -> None:
        """Take the lease, then run every task under its heartbeat."""
        if any(task.kind == "flow" for task in self.tasks):
            await check_children(self.config.storage, self.workflow_id, self.tasks)
        await self.lease.acquire(self.options.wait_for_lease)
        await _with_heartbeat(self.lease, self._body)

    async def _body(self) -> None:
        options = self.options
        self.manifest, records = await prepare_run(
            self.config,
            self.workflow_id,
            self.tasks,
            options,
            self.recorder,
            self.pack,
            self.parent,
        )
        runner = self.runner = Runner(
            workflow_id=self.workflow_id,
            config=self.config,
            bus=self.bus,
            records=records,
            keep_going=options.keep_going,
            lease=self.lease,
            on_code_change=options.on_code_change,
            on_wait=options.on_wait,
            first_input=self.first_input,
            first_digest=self.first_digest,
        )
        runner.snapshot = self.pack.snapshot
        self.pack.watch(runner.committer)
        parent = PARENT.set(
            Parent(
                config=self.config,
                workflow_id=self.workflow_id,
                resume=options.resume,
                max_concurrency=options.max_concurrency,
                on_wait=options.on_wait,
            )
        )

        async def steps() -> None:
            await MODES[options.mode](runner, self.tasks, options.max_concurrency)

        try:
            async with runner.committer.running():
                await self.recorder.alongside(steps, self.tasks, self.manifest, self.lease, runner)
        finally:
            PARENT.reset(parent)
        if runner.stale_blobs:  # outputs offloaded by records this run replaced
            await collect_garbage(
                self.config.storage, self.workflow_id, candidates=runner.stale_blobs
            )

    async def end(self, *, cancelled: bool) -> str:
        """How the run ended (``completed``, ``failed``, ``waiting``, ``cancelled``), recorded."""
        failed = any(t.status is TaskStatus.FAILED for t in self.tasks)
        parked = self.runner.parked if self.runner is not None else {}
        if cancelled:
            status = "cancelled"
        else:
            status = "failed" if failed else "waiting" if parked else "completed"
        if self.manifest is not None:
            self.lease.ensure()
            final = dataclasses.replace(
                _with_children(self.manifest, self.tasks),
                waiting={key: spec.to_json() for key, spec in parked.items()},
                due_at=due_at(parked.values()),
            )
            if self.runner is not None:
                await self.pack.end(self.recorder.run_id, status, self.runner.committer)
            await self.recorder.end(status, self.tasks, final)
        return status

    async def end_after(self, exc: BaseException) -> str:
        """The run was cut short by ``exc``: record it ``cancelled`` or ``failed`` (unless the
        lease was lost: another runner owns ``run.json`` now)."""
        cancelled = isinstance(exc, (anyio.get_cancelled_exc_class(), KeyboardInterrupt))
        ending = "cancelled" if cancelled else "failed"
        if self.manifest is not None and not isinstance(exc, LeaseLost):
            manifest = _with_children(self.manifest, self.tasks)
            await self.recorder.end_after(ending, self.tasks, manifest, exc)
        return ending
