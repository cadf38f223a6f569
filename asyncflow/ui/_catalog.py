"""The workflows index: every workflow of a storage, as the workflows page lists it.

Pages never touch storage or records directly; they render these frozen
views. Everything here is read-only, and a record is parsed for its metadata
only: an output is never decoded by a serializer (a pickled output is never
unpickled) and a signature is not verified (the viewer needs no key).

The workflows page reads one delimiter listing of the storage root (the
workflow ids) and each workflow's ``run.json``, never a task record
(``asyncflow.reading``). The index is cached in the app and refreshed
incrementally: a workflow's ``run.json`` is read again when it is new, while
its run is not finished, or when the cached copy is older than ``max_age``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio
import anyio.abc

from asyncflow.providers import Storage
from asyncflow.reading import WorkflowInfo, list_workflows, workflow_ids

__all__ = [
    "FINISHED",
    "Catalog",
    "WorkflowPage",
    "WorkflowRow",
]

#: Statuses after which a run.json changes only when a new run starts.
FINISHED = frozenset({"completed", "failed", "cancelled"})
logger = logging.getLogger("asyncflow.ui")
STATUSES = ("running", "waiting", "completed", "failed", "cancelled", "crashed", "reset")


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """One workflow on the workflows page, from its ``run.json`` alone."""

    workflow_id: str
    status: str
    mode: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    tasks: int = 0
    problem: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    rows: tuple[WorkflowRow, ...]
    total: int
    matching: int
    counts: dict[str, int]
    page: int
    pages: int
    age: float = 0.0
    reading: tuple[int, int] | None = None


@dataclass(slots=True)
class _Cached:
    row: WorkflowRow
    read_at: float


@dataclass(slots=True)
class _Index:
    rows: dict[str, _Cached] = field(default_factory=dict)
    ordered: list[WorkflowRow] = field(default_factory=list)
    listed_at: float = -math.inf


def _row(info: WorkflowInfo) -> WorkflowRow:
    if info.problem is not None:
        return WorkflowRow(info.workflow_id, "corrupt", problem=info.problem)
    return WorkflowRow(
        info.workflow_id,
        info.status,
        mode=info.mode,
        created_at=info.started_at or info.created_at,
        updated_at=info.updated_at,
        tasks=info.tasks,
        run_id=info.run_id,
    )


#: Workflows whose ``run.json`` the first index reads between two updates of the page's count.
_CHUNK = 256


def _newest_first(rows: Iterable[WorkflowRow]) -> list[WorkflowRow]:
    return sorted(rows, key=lambda r: (-(r.updated_at or 0.0), r.workflow_id))


class Catalog:
    """The workflows of one storage, as the workflows page lists them.

    ``ttl``: a listing younger than this is reused as is (several pages
    opened at once cost one listing). A finished run's row is read again
    once older than ``max_age``, at most ``budget`` of them per refresh
    (oldest first). ``concurrency`` bounds the reads of ``run.json`` in
    flight. ``clock`` is injectable for tests.

    The first index reads every ``run.json``: on an object store that takes
    seconds for thousands of workflows. Once ``attach`` gave the catalog a
    task group (the app's lifespan), that build starts at once, in the
    background, and a page asked for before it ends waits at most
    ``first_wait`` seconds, then shows the rows read so far and says how
    many are left (the page polls until the index is complete).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        ttl: float = 2.0,
        max_age: float = 30.0,
        budget: int = 2000,
        concurrency: int = 32,
        clock: Callable[[], float] = time.monotonic,
        first_wait: float = 0.15,
    ) -> None:
        self.storage = storage
        self.ttl = ttl
        self.max_age = max_age
        self.budget = budget
        self.concurrency = concurrency
        self.clock = clock
        self.first_wait = first_wait
        self._index = _Index()
        self._lock = anyio.Lock()
        self._group: anyio.abc.TaskGroup | None = None
        self._first: anyio.Event | None = None
        self._reading: tuple[dict[str, WorkflowRow], int] | None = None

    def attach(self, group: anyio.abc.TaskGroup) -> None:
        """Build indexes in ``group`` from now on, starting with the first one."""
        self._group = group
        self._start_first()

    def _start_first(self) -> None:
        if self._first is None and self._group is not None:
            self._first = anyio.Event()
            self._group.start_soon(self._build_first)

    async def _build_first(self) -> None:
        first = self._first
        try:
            async with self._lock:
                if self._index.listed_at == -math.inf:
                    await self._refresh(progress=True)
        except Exception:
            logger.warning("viewer: building the workflows index failed", exc_info=True)
            self._first = None  # the next page builds it itself, and shows the error
        finally:
            self._reading = None
            if first is not None:
                first.set()

    async def _first_rows(self) -> tuple[list[WorkflowRow], tuple[int, int] | None]:
        """The rows to show while the first index may still be built in the background."""
        if self._index.listed_at == -math.inf and self._group is not None:
            self._start_first()
            first = self._first
            if first is not None:
                with anyio.move_on_after(self.first_wait):
                    await first.wait()
            reading = self._reading
            if self._index.listed_at == -math.inf and reading is not None:
                found, total = reading
                return _newest_first(found.values()), (len(found), total)
        return await self.rows(fresh=False), None

    @property
    def built(self) -> bool:
        """An index exists (however old)."""
        return self._index.listed_at != -math.inf

    @property
    def stale(self) -> bool:
        """The index is older than ``ttl`` (or was never built)."""
        return self.clock() - self._index.listed_at >= self.ttl

    async def rows(self, *, fresh: bool = True) -> list[WorkflowRow]:
        """Every workflow, newest first (by last update).

        ``fresh=False`` returns an index already built as it is, however old:
        the caller refreshes it afterwards (``refresh``), so a page never
        waits for a listing of the whole storage except the first time.
        """
        async with self._lock:
            if self._index.listed_at == -math.inf or (fresh and self.stale):
                await self._refresh()
            return self._index.ordered

    async def refresh(self) -> None:
        """Bring a stale index up to date, unless a refresh is already under way."""
        if self._lock.locked() or not self.stale:
            return
        async with self._lock:
            try:
                await self._refresh()
            except Exception:
                logger.warning("viewer: refreshing the workflows index failed", exc_info=True)

    @property
    def age(self) -> float:
        """Seconds since the index was listed."""
        return max(0.0, self.clock() - self._index.listed_at)

    async def _refresh(self, *, progress: bool = False) -> None:
        if progress:
            self._reading = ({}, 0)
        listed = await workflow_ids(self.storage)
        now = self.clock()
        old = self._index.rows
        unfinished = [
            wid
            for wid in listed
            if (cached := old.get(wid)) is None or cached.row.status not in FINISHED
        ]
        aged = sorted(
            (cached.read_at, wid)
            for wid in listed
            if (cached := old.get(wid)) is not None
            and cached.row.status in FINISHED
            and now - cached.read_at >= self.max_age
        )
        stale = unfinished + [wid for _, wid in aged[: self.budget]]
        fresh: dict[str, WorkflowRow] = {}
        step = _CHUNK if progress else max(1, len(stale))
        for start in range(0, len(stale), step):
            chunk = stale[start : start + step]
            infos = await list_workflows(self.storage, ids=chunk, concurrency=self.concurrency)
            fresh.update((info.workflow_id, _row(info)) for info in infos)
            if progress:
                self._reading = (dict(fresh), len(stale))
        rows: dict[str, _Cached] = {}
        for wid in listed:
            if wid in fresh:
                rows[wid] = _Cached(fresh[wid], now)
            elif wid in old and wid not in stale:
                rows[wid] = old[wid]
        ordered = _newest_first(cached.row for cached in rows.values())
        self._index = _Index(rows, ordered, now)

    async def page(
        self,
        *,
        status: str | None = None,
        query: str = "",
        page: int = 1,
        per_page: int = 50,
        fresh: bool = True,
    ) -> WorkflowPage:
        """One page of the workflows matching ``status`` and containing ``query``.

        ``reading`` on the page: the first index is still being built, and
        the page shows the rows read so far.
        """
        if fresh:
            rows, reading = await self.rows(), None
        else:
            rows, reading = await self._first_rows()
        needle = query.strip().lower()
        searched = [r for r in rows if needle in r.workflow_id.lower()] if needle else rows
        counts: dict[str, int] = {}
        for row in searched:
            counts[row.status] = counts.get(row.status, 0) + 1
        matching = [r for r in searched if r.status == status] if status else searched
        pages = max(1, math.ceil(len(matching) / per_page))
        page = min(max(1, page), pages)
        start = (page - 1) * per_page
        return WorkflowPage(
            rows=tuple(matching[start : start + per_page]),
            total=len(rows),
            matching=len(matching),
            counts=counts,
            page=page,
            pages=pages,
            age=self.age,
            reading=reading,
        )

    def forget(self, workflow_id: str) -> None:
        """Drop a workflow's cached row (after an action changed it)."""
        self._index.rows.pop(workflow_id, None)
        self._index.listed_at = -math.inf
