"""``StorageGCS``: checkpoints in a Google Cloud Storage bucket.

Built on gcloud-aio-storage (aiohttp), so it runs on asyncio (and uvloop)
only; under trio it refuses with ``ConfigurationError``.

Configuration follows the SDK: credentials come from its usual chain
(``GOOGLE_APPLICATION_CREDENTIALS``, the gcloud CLI's application default
credentials, the metadata server) unless ``service_file=`` or ``token=`` is
given; ``STORAGE_EMULATOR_HOST`` or ``api_root=`` points it at an emulator
(then no credentials are sent at all). Dotflow's ``project=`` is refused with
a ``ConfigurationError``: objects in a named bucket need no project.

Conditional writes use generations: ``if_absent`` is ``ifGenerationMatch=0``
and ``if_version`` is ``ifGenerationMatch=<generation>``; the version of a
record is its generation. Uploads are always *multipart* (object metadata
plus data in one request), which GCS and fake-gcs-server both honour
preconditions on; fake-gcs-server ignores them on simple media uploads.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

from asyncflow._kernel.concurrency import require_asyncio
from asyncflow._kernel.errors import (
    AsyncflowError,
    ConfigurationError,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)
from asyncflow._kernel.ids import validate_storage_key
from asyncflow._kernel.storage import Blob, ClosingStorage, check_children_prefix
from asyncflow.providers._client_options import refuse_gcs_project

try:
    import aiohttp
    from gcloud.aio.storage import Storage as _GCSClient
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"StorageGCS needs gcloud-aio-storage, which is not installed ({exc}); "
        "install it with: pip install 'asyncflow-durable[gcs]'"
    ) from exc

__all__ = ["StorageGCS"]

T = TypeVar("T")

#: Answers worth retrying: the request was throttled or the service hiccuped.
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Sent with every upload; besides saying "never serve a stale checkpoint from
#: a cache", non-empty metadata is what makes the upload multipart.
_UPLOAD_METADATA = {"Cache-Control": "no-store"}


def _normalise_root(prefix: str) -> str:
    """Turn ``"a/b"``, ``"/a/b/"`` into ``"a/b/"`` (``""`` stays ``""``)."""
    if not isinstance(prefix, str):
        raise ConfigurationError(f"prefix must be a str, got {type(prefix).__name__}")
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    validate_storage_key(stripped)
    return stripped + "/"


def _check_list_prefix(prefix: str) -> str:
    """Refuse listing prefixes that no valid key could start with (``../``)."""
    if not isinstance(prefix, str):
        raise ConfigurationError(f"list prefix must be a str, got {type(prefix).__name__}")
    if prefix:
        validate_storage_key(prefix + "_" if prefix.endswith("/") else prefix)
    return prefix


def _content_type(key: str) -> str:
    return "application/json" if key.endswith(".json") else "application/octet-stream"


class _Transient(Exception):
    """Internal: a retryable failure, carrying the exception to report."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class StorageGCS(ClosingStorage):
    """Records as objects under ``gs://{bucket}/{prefix}/``.

    One gcloud-aio ``Storage`` client (one aiohttp session) is made per
    storage object, lazily on first use, under an ``asyncio.Lock``, and closed
    by ``aclose()`` or ``async with``. A client passed as ``storage=``, or an
    aiohttp ``session=``, belongs to the caller and is never closed here.

    gcloud-aio does not retry, so this class does: throttling (429), 5xx,
    408 and connection errors are retried ``retries`` times with jittered
    exponential backoff before ``StorageUnavailable`` is raised. A conditional
    write that fails its precondition is checked against the stored bytes:
    if they are exactly ours, an earlier attempt landed and only its answer
    was lost (then re-sent by us or by aiohttp), so the write succeeded.

    ``delete_many`` deletes with bounded concurrency (the JSON API's batch
    endpoint is not exposed by gcloud-aio). ``page_size`` is the listing page
    (the service's maximum is 1000).
    """

    persistent = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        session: aiohttp.ClientSession | None = None,
        storage: _GCSClient | None = None,
        api_root: str | None = None,
        token: Any = None,
        service_file: str | None = None,
        timeout: float = 30,
        retries: int = 4,
        page_size: int = 1000,
        delete_concurrency: int = 32,
        project: None = None,
    ) -> None:
        refuse_gcs_project(project)
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise ConfigurationError(f"GCS bucket must be a bucket name, got {bucket!r}")
        if storage is not None and (
            session is not None or api_root or token is not None or service_file
        ):
            raise ConfigurationError(
                "StorageGCS: pass either storage= or session=/api_root=/token=, not both"
            )
        if retries < 0 or page_size < 1 or delete_concurrency < 1:
            raise ConfigurationError("StorageGCS: retries >= 0, page_size and concurrency >= 1")
        self.bucket = bucket
        self.prefix = _normalise_root(prefix)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(f"StorageGCS timeout must be seconds > 0, got {timeout!r}")
        self.timeout = timeout
        # gcloud-aio annotates int, but hands the value to aiohttp, which takes
        # float seconds; int() would turn 0.5 into 0, i.e. no timeout at all.
        self._sdk_timeout = cast(int, float(timeout))
        self.retries = retries
        self.page_size = min(page_size, 1000)
        self.delete_concurrency = delete_concurrency
        self._session = session
        self._api_root = api_root
        self._token = token
        self._service_file = service_file
        self._client: _GCSClient | None = storage
        self._owns_client = storage is None
        self._lock: asyncio.Lock | None = None
        self._bucket_checked = False

    # -- client lifecycle -------------------------------------------------

    async def client(self) -> _GCSClient:
        """Return the gcloud-aio ``Storage`` client, creating it on first use.

        It is made inside the running loop because its aiohttp session binds
        to that loop; the lock makes concurrent first calls share one.
        """
        if self._client is not None:
            return self._client
        require_asyncio("StorageGCS (gcloud-aio-storage)")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                self._client = _GCSClient(
                    service_file=self._service_file,
                    token=self._token,
                    session=self._session,  # type: ignore[arg-type]  # gcloud aliases it
                    api_root=self._api_root,
                )
        return self._client

    async def aclose(self) -> None:
        """Close the client this object made; a caller-owned one stays open."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -- the Storage protocol ---------------------------------------------

    def _key(self, key: str) -> str:
        return self.prefix + validate_storage_key(key)

    def _where(self, name: str) -> str:
        return f"gs://{self.bucket}/{name}"

    async def read(self, key: str) -> Blob | None:
        name = self._key(key)
        client = await self.client()

        async def attempt() -> tuple[bytes, str | None]:
            stream = await client.download_stream(self.bucket, name, timeout=self._sdk_timeout)
            async with stream as response:
                return await response.read(), response.headers.get("x-goog-generation")

        try:
            data, generation = await self._retrying(attempt)
        except aiohttp.ClientResponseError as exc:
            if exc.status == 404:
                await self._require_bucket("read", name)
                return None
            raise self._error("read", name, exc) from exc
        except Exception as exc:
            raise self._error("read", name, exc) from exc
        if not generation:
            raise StorageError(f"GCS read {self._where(name)}: the server sent no generation")
        return Blob(data, generation)

    async def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_version: str | None = None,
    ) -> str:
        name = self._key(key)
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        if if_absent and if_version is not None:
            raise ConfigurationError("write: if_absent and if_version are mutually exclusive")
        if if_version is not None and not (isinstance(if_version, str) and if_version.isdigit()):
            # Not a generation this backend handed out, so it cannot match.
            raise PreconditionFailed(f"{self._where(name)} is not at version {if_version!r}")
        conditional = if_absent or if_version is not None
        client = await self.client()

        async def attempt() -> dict[str, Any]:
            parameters: dict[str, str] = {}
            if if_absent:
                parameters["ifGenerationMatch"] = "0"
            elif if_version is not None:
                parameters["ifGenerationMatch"] = if_version
            return await client.upload(
                self.bucket,
                name,
                data,
                content_type=_content_type(name),
                parameters=parameters,
                metadata=dict(_UPLOAD_METADATA),
                force_resumable_upload=False,
                timeout=self._sdk_timeout,
            )

        try:
            response = await self._retrying(attempt)
        except aiohttp.ClientResponseError as exc:
            if conditional and exc.status == 412:
                # A request re-sent after a lost answer (by our retry loop or
                # by aiohttp, invisibly) fails its own precondition: the
                # object then holds exactly our bytes, and we did win.
                blob = await self.read(key)
                if blob is not None and blob.data == data:
                    return blob.version
                what = "already exists" if if_absent else f"is not at version {if_version}"
                raise PreconditionFailed(f"{self._where(name)} {what}") from exc
            raise self._error("write", name, exc) from exc
        except Exception as exc:
            raise self._error("write", name, exc) from exc
        generation = response.get("generation")
        if not generation:
            raise StorageError(f"GCS write {self._where(name)}: the server sent no generation")
        return str(generation)

    async def delete(self, key: str) -> None:
        name = self._key(key)
        await self._delete(name)

    async def _delete(self, name: str) -> None:
        client = await self.client()
        try:
            await self._retrying(
                lambda: client.delete(self.bucket, name, timeout=self._sdk_timeout)
            )
        except aiohttp.ClientResponseError as exc:
            if exc.status == 404:
                await self._require_bucket("delete", name)
                return
            raise self._error("delete", name, exc) from exc
        except Exception as exc:
            raise self._error("delete", name, exc) from exc

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` (validated first), ``delete_concurrency`` at a time.

        Missing keys are fine; the first other failure cancels the rest and
        is raised.
        """
        names = [self._key(key) for key in keys]
        if not names:
            return
        semaphore = asyncio.Semaphore(self.delete_concurrency)

        async def one(name: str) -> None:
            async with semaphore:
                await self._delete(name)

        tasks = [asyncio.ensure_future(one(name)) for name in names]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        """Yield keys under ``prefix`` (relative to the storage root), sorted.

        Every page is fetched before the first key is yielded, so a failure
        on a later page can never pass for a short listing.
        """
        for name, _ in await self._listed(prefix, "items(name),nextPageToken"):
            yield name

    async def list_versions(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        """``list`` with each object's generation, from the same pages (``list_versions``)."""
        for item in await self._listed(prefix, "items(name,generation),nextPageToken"):
            yield item

    async def _listed(self, prefix: str, fields: str) -> builtins.list[tuple[str, str]]:
        full_prefix = self.prefix + _check_list_prefix(prefix)
        skip = len(self.prefix)
        found: builtins.list[tuple[str, str]] = []
        async for page in self._pages("list", {"prefix": full_prefix, "fields": fields}):
            found.extend(
                (item["name"][skip:], str(item.get("generation", "")))
                for item in page.get("items", ())
            )
        found.sort()
        return found

    async def list_children(self, prefix: str) -> AsyncIterator[str]:
        """The next path segments under ``prefix``: a listing with ``delimiter=/``."""
        full_prefix = self.prefix + _check_list_prefix(check_children_prefix(prefix))
        found: set[str] = set()
        params = {
            "prefix": full_prefix,
            "delimiter": "/",
            "fields": "items(name),prefixes,nextPageToken",
        }
        async for page in self._pages("list", params):
            found.update(p[len(full_prefix) :] for p in page.get("prefixes", ()))
            found.update(item["name"][len(full_prefix) :] for item in page.get("items", ()))
        for segment in sorted(found):
            yield segment

    async def _pages(self, op: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Every page of one listing, in order; a failure on any page raises ``StorageError``."""
        client = await self.client()
        token = ""
        where = params["prefix"] + "*"
        while True:
            asked = {**params, "maxResults": str(self.page_size)}
            if token:
                asked["pageToken"] = token
            try:
                page = await self._retrying(
                    functools.partial(
                        client.list_objects, self.bucket, params=asked, timeout=self._sdk_timeout
                    )
                )
            except Exception as exc:
                raise self._error(op, where, exc) from exc
            yield page
            token = page.get("nextPageToken") or ""
            if not token:
                return

    # -- retries and errors -------------------------------------------------

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``, retrying transient failures with jittered backoff."""
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                if not _is_transient(exc) or attempt == self.retries:
                    raise
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _require_bucket(self, op: str, name: str) -> None:
        """Tell "no such object" from "no such bucket" on a 404.

        GCS says which in prose, emulators do not; a missing bucket must not
        read as a missing checkpoint, so check the bucket once per object.
        """
        if self._bucket_checked:
            return
        client = await self.client()
        try:
            await self._retrying(
                lambda: client.get_bucket_metadata(self.bucket, timeout=self._sdk_timeout)
            )
        except aiohttp.ClientResponseError as exc:
            if exc.status == 404:
                raise StorageError(
                    f"GCS {op} {self._where(name)} failed: bucket {self.bucket!r} does not exist"
                ) from exc
            if exc.status == 403:
                # Object access without bucket metadata rights is a common
                # least-privilege setup: the object 404 stands.
                self._bucket_checked = True
                return
            raise self._error(op, name, exc) from exc
        except Exception as exc:
            raise self._error(op, name, exc) from exc
        self._bucket_checked = True

    def _error(self, op: str, name: str, exc: Exception) -> AsyncflowError:
        """Translate an SDK exception; the message never carries credentials
        (the bearer token lives in request headers, which are not quoted)."""
        where = self._where(name)
        if isinstance(exc, AsyncflowError):
            return exc
        if isinstance(exc, aiohttp.ClientResponseError):
            detail = f"HTTP {exc.status}: {_short(exc.message)}"
            if exc.status == 404:
                return StorageError(
                    f"GCS {op} {where} failed: bucket {self.bucket!r} does not exist ({detail})"
                )
            if exc.status in _TRANSIENT_STATUS:
                return StorageUnavailable(f"GCS {op} {where} failed after retries: {detail}")
            if exc.status in (401, 403):
                return StorageError(
                    f"GCS {op} {where} was refused: {detail}; check the credentials "
                    "and the bucket's IAM policy"
                )
            return StorageError(f"GCS {op} {where} failed: {detail}")
        if isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
            return StorageUnavailable(
                f"GCS {op} {where} failed: cannot reach the server: {type(exc).__name__}: {exc}"
            )
        return StorageError(f"GCS {op} {where} failed: {type(exc).__name__}: {_short(str(exc))}")

    def __repr__(self) -> str:
        return f"StorageGCS(bucket={self.bucket!r}, prefix={self.prefix!r})"


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status in _TRANSIENT_STATUS
    return True


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
