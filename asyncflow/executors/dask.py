"""``DaskExecutor``: run each step's function on a dask.distributed cluster.

Only the step's function travels. The runner stays on the caller's event
loop and keeps everything that makes a run durable: checkpoints, the lease
and its heartbeat, retries, timeouts and events. So every mode and
``resume=True`` behave as in-process, and a worker that dies costs at most
the attempts that were running on it.

- ``async def`` steps run on the worker's event loop (distributed awaits a
  coroutine function task there); plain ``def`` steps on a worker thread.
- Inputs (``initial_context``, ``previous_context``) and outputs travel
  with Dask's serialization (pickle, cloudpickle for closures and
  ``__main__``). A step that cannot be shipped fails its attempt with
  ``TaskFailed`` naming the step.
- A cancelled attempt (its ``timeout``, ``flow.cancel()``, a cancel scope)
  cancels the remote future with ``client.cancel``: an async step is
  cancelled on the worker; a sync step's thread cannot be interrupted, so
  it runs to its end there and its result is dropped.
- Every attempt is a new Dask key (``pure=False``): a retry really runs
  again, it never reuses the failed attempt's result.
- A class step ships as one remote call (its ``__init__`` and its methods
  in order, on one worker thread; an async method runs to completion on a
  private event loop of that thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import anyio
from distributed import Client
from distributed.protocol import pickle as _dask_pickle

from asyncflow._kernel.concurrency import require_asyncio
from asyncflow._kernel.errors import ConfigurationError, TaskFailed

__all__ = ["DaskExecutor"]

_SERIALIZE_FAILED = "Could not serialize object"

#: distributed's own pickler (cloudpickle where plain pickle fails), typed
_dask_dumps: Callable[[Any], bytes] = _dask_pickle.dumps


def _call_sync(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    return func(**kwargs)


#: On a worker: the running async attempts by token, and tokens cancelled
#: before their attempt started (bounded; a token is used once).
_RUNNING: dict[str, asyncio.Future[Any]] = {}
_CANCELLED: dict[str, None] = {}


async def _call_async(func: Callable[..., Any], kwargs: dict[str, Any], token: str) -> Any:
    """Run an async step on the worker's loop as a task ``_cancel_remote`` can cancel.

    distributed's ``client.cancel`` forgets the key but lets a running
    coroutine run on; this makes a cancelled attempt stop on the worker too.
    """
    if _CANCELLED.pop(token, False) is None:
        raise asyncio.CancelledError(f"attempt {token} was cancelled before it started")
    inner = asyncio.ensure_future(func(**kwargs))
    _RUNNING[token] = inner
    try:
        return await inner
    finally:
        _RUNNING.pop(token, None)


def _cancel_remote(token: str) -> bool:
    """Run on every worker by ``client.run``: cancel attempt ``token`` (or pre-empt it)."""
    inner = _RUNNING.get(token)
    if inner is not None:
        inner.get_loop().call_soon_threadsafe(inner.cancel)
        return True
    _CANCELLED[token] = None
    while len(_CANCELLED) > 10_000:
        del _CANCELLED[next(iter(_CANCELLED))]
    return False


class DaskExecutor:
    """Submit each step attempt to a Dask cluster and await it on the caller's loop.

    ``address_or_client`` is a scheduler address (``"tcp://10.0.0.5:8786"``)
    or an asynchronous ``distributed.Client`` (``asynchronous=True``) made on
    the loop that runs the flows. With an address, the executor opens its own
    client on first use, on the running loop, and ``aclose()`` (or
    ``async with``) closes it. asyncio only: distributed runs on asyncio.
    Extra keywords (``resources=``, ``workers=``, ``priority=``...) are passed
    to every ``client.submit``.
    """

    def __init__(self, address_or_client: str | Client, **submit_options: Any) -> None:
        if isinstance(address_or_client, Client):
            if not address_or_client.asynchronous:
                raise ConfigurationError(
                    "DaskExecutor needs an asynchronous Client: Client(..., asynchronous=True)"
                )
            self._client: Client | None = address_or_client
            self._address: str | None = None
        elif isinstance(address_or_client, str):
            self._client = None
            self._address = address_or_client
        else:
            raise ConfigurationError(
                "DaskExecutor takes a scheduler address or an asynchronous"
                f" distributed.Client, got {address_or_client!r}"
            )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Lock | None = None
        self._submit_options = submit_options
        self._shippable: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"DaskExecutor({self._address or self._client!r})"

    async def client(self) -> Client:
        """The asynchronous client, opened on the running loop if given an address."""
        loop = require_asyncio("DaskExecutor (dask.distributed)")
        if self._address is None:
            assert self._client is not None
            return self._client
        if self._client is not None and self._loop is loop:
            return self._client
        if self._connecting is None or self._loop is not loop:
            self._connecting, self._loop, self._client = asyncio.Lock(), loop, None
        async with self._connecting:
            if self._client is None:
                self._client = await Client(  # type: ignore[no-untyped-call]
                    self._address, asynchronous=True
                )
        return self._client

    async def aclose(self) -> None:
        """Close the client this executor opened (a client you passed in stays open)."""
        client, self._client = self._client, None
        if client is not None and self._address is not None:
            await client.close()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> DaskExecutor:
        await self.client()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _check_shippable(self, func: Callable[..., Any], name: str) -> None:
        try:
            if self._shippable.get(func):
                return
        except TypeError:  # unhashable or not weak-referenceable: check every time
            pass
        try:
            _dask_dumps(func)
        except Exception as exc:
            raise TaskFailed(
                f"step {name} cannot be shipped to the Dask cluster: its function"
                f" does not pickle ({exc}); define it at module level, importable on"
                " the workers, and keep locks, clients and open files out of its closure",
                step=name,
            ) from exc
        with contextlib.suppress(TypeError):
            self._shippable[func] = True

    async def run(
        self,
        func: Callable[..., Any],
        kwargs: dict[str, Any],
        *,
        name: str,
        is_async: bool,
        timeout: float | None,  # noqa: ASYNC109 - the runner enforces it
    ) -> Any:
        """Run one attempt of step ``name`` on the cluster and return its output."""
        self._check_shippable(func, name)
        client = await self.client()
        token = uuid.uuid4().hex
        args = (_call_async, func, kwargs, token) if is_async else (_call_sync, func, kwargs)
        future: Any = client.submit(
            *args, key=f"{name}-{token}", pure=False, **self._submit_options
        )
        try:
            return await future
        except TypeError as exc:
            if _SERIALIZE_FAILED in str(exc):
                raise TaskFailed(
                    f"step {name}: its inputs or output cannot be shipped between the"
                    f" runner and the Dask cluster: {str(exc).splitlines()[0]}",
                    step=name,
                ) from exc
            raise
        finally:
            if not future.done():  # cancelled (timeout, flow.cancel()) or the client failed
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await client.cancel([future])  # type: ignore[no-untyped-call]
                    if is_async:  # a running coroutine is not stopped by the above
                        await client.run(_cancel_remote, token)
            future.release()
