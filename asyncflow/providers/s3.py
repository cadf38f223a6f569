"""``StorageS3``: checkpoints in an S3 bucket (or any S3-compatible server).

Built on aiobotocore, so it runs on asyncio (and uvloop) only; under trio it
refuses with ``ConfigurationError`` instead of failing deep inside aiohttp.

Configuration follows the SDK so existing setups work unchanged: credentials
come from botocore's usual chain (environment, ``~/.aws``, SSO, instance
metadata, ...), the endpoint from ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``
and the region from ``AWS_DEFAULT_REGION``, unless given explicitly as keyword
arguments (``endpoint_url=``, ``region_name=``, ``config=`` ...), which are
passed to ``session.create_client("s3", ...)`` as they are; Dotflow's
``region=`` is ``region_name=``, and a name botocore does not take is refused
by the constructor.

Conditional writes map onto S3's own: ``if_absent`` is ``If-None-Match: *``
and ``if_version`` is ``If-Match: <etag>``; the version of a record is its
ETag. See ``docs/storage.md`` for which server answer maps to which error.
"""

from __future__ import annotations

import asyncio
import builtins
import random
from collections.abc import AsyncIterator, Iterable
from typing import Any

from asyncflow._kernel.concurrency import require_asyncio
from asyncflow._kernel.errors import (
    AsyncflowError,
    ConfigurationError,
    PreconditionFailed,
    StorageError,
)
from asyncflow._kernel.ids import validate_storage_key
from asyncflow._kernel.storage import Blob, ClosingStorage, check_children_prefix
from asyncflow.providers._client_options import s3_client_options

try:
    import aiohttp
    from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
    from aiobotocore.session import get_session  # type: ignore[import-untyped]
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"StorageS3 needs aiobotocore, which is not installed ({exc}); "
        "install it with: pip install 'asyncflow-durable[s3]'"
    ) from exc

from asyncflow.providers._s3_errors import (
    MISSING_KEY_CODES,
    PRECONDITION_CODES,
    code_of,
    status_of,
    translate,
)

__all__ = ["StorageS3"]

#: DeleteObjects accepts at most this many keys per request.
_DELETE_BATCH = 1000
#: Connections kept per client (botocore's default is 10): a resume's 32 reads
#: in flight, or many workflows sharing one storage, otherwise queue for one.
MAX_POOL_CONNECTIONS = 64
#: Attempts at a GetObject whose body is cut off or stalls mid-read (botocore
#: retries only up to the response headers).
_BODY_ATTEMPTS = 3


def _default_config() -> Any:
    """Retries in botocore's "standard" mode cover throttling and 5xx faults
    with jittered backoff, so callers only see errors that outlived them."""
    return AioConfig(
        retries={"mode": "standard", "total_max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=MAX_POOL_CONNECTIONS,
    )


def _normalise_root(prefix: str) -> str:
    """Turn ``"a/b"``, ``"/a/b/"`` into ``"a/b/"`` (``""`` stays ``""``).

    The root is validated like a key so that a hostile prefix cannot make
    every key land somewhere unexpected either.
    """
    if not isinstance(prefix, str):
        raise ConfigurationError(f"prefix must be a str, got {type(prefix).__name__}")
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    validate_storage_key(stripped)
    return stripped + "/"


def _check_list_prefix(prefix: str) -> str:
    """Refuse listing prefixes that no valid key could start with.

    ``""``, ``"wf/"``, ``"wf/tasks/00"`` are fine; ``"../"`` or ``"/x"`` are
    refused rather than sent to the server, where they could reach outside
    the storage root.
    """
    if not isinstance(prefix, str):
        raise ConfigurationError(f"list prefix must be a str, got {type(prefix).__name__}")
    if prefix:
        validate_storage_key(prefix + "_" if prefix.endswith("/") else prefix)
    return prefix


def _content_type(key: str) -> str:
    return "application/json" if key.endswith(".json") else "application/octet-stream"


class StorageS3(ClosingStorage):
    """Records as objects under ``s3://{bucket}/{prefix}/``.

    One aiobotocore client is made per storage object, lazily on first use
    (so constructing a ``StorageS3`` does no I/O and can happen outside a
    loop), and closed by ``aclose()`` or ``async with``. A client passed in
    with ``client=`` is used as is and never closed here: its owner closes it.
    After ``aclose()`` the object may be used again and makes a new client;
    a client is bound to the event loop it was made on, so use one storage
    object per loop.

    Transient faults (throttling, 5xx, dropped connections) are retried by
    botocore in "standard" mode. A conditional write that fails its
    precondition is checked against the stored bytes: if they are exactly
    ours, an earlier attempt landed and only its answer was lost (the
    request was then re-sent by botocore or, invisibly, by aiohttp), so the
    write succeeded. The first lost precondition also checks that the bucket
    exists, because some servers answer 412 before looking for the bucket.

    ``delete_many`` removes keys with batch DeleteObjects requests (1000 per
    request); the engine uses it when clearing a workflow.
    """

    persistent = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        session: Any = None,
        client: Any = None,
        **client_kwargs: Any,
    ) -> None:
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise ConfigurationError(f"S3 bucket must be a bucket name, got {bucket!r}")
        if client is not None and (session is not None or client_kwargs):
            raise ConfigurationError(
                "StorageS3: pass either client= or session=/client options, not both"
            )
        self.bucket = bucket
        self.prefix = _normalise_root(prefix)
        self._session: Any = session
        self._client_kwargs = s3_client_options(client_kwargs)
        self._client: Any = client
        self._owns_client = client is None
        self._client_cm: Any = None
        self._lock: asyncio.Lock | None = None
        self._bucket_checked = False

    # -- client lifecycle -------------------------------------------------

    async def client(self) -> Any:
        """Return the aiobotocore S3 client, creating it on first use.

        An ``asyncio.Lock`` makes concurrent first calls share one client
        instead of each opening (and leaking) a connection pool.
        """
        if self._client is not None:
            return self._client
        require_asyncio("StorageS3 (aiobotocore)")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                session = self._session if self._session is not None else get_session()
                kwargs = dict(self._client_kwargs)
                user_config = kwargs.pop("config", None)
                config = _default_config()
                if user_config is not None:
                    config = config.merge(user_config)
                cm = session.create_client("s3", config=config, **kwargs)
                try:
                    self._client = await cm.__aenter__()
                except (BotoCoreError, ValueError) as exc:
                    raise StorageError(
                        f"cannot create an S3 client for bucket {self.bucket!r}: {exc}"
                    ) from exc
                self._client_cm = cm
        return self._client

    async def aclose(self) -> None:
        """Close the client this object made; a caller-owned client stays open."""
        cm, self._client_cm = self._client_cm, None
        if self._owns_client:
            self._client = None
        if cm is not None:
            await cm.__aexit__(None, None, None)

    # -- the Storage protocol ---------------------------------------------

    def _key(self, key: str) -> str:
        return self.prefix + validate_storage_key(key)

    def _where(self, full_key: str) -> str:
        return f"s3://{self.bucket}/{full_key}"

    async def read(self, key: str) -> Blob | None:
        full = self._key(key)
        client = await self.client()
        for attempt in range(1, _BODY_ATTEMPTS + 1):
            try:
                response = await client.get_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if code_of(exc) in MISSING_KEY_CODES or (
                    status_of(exc) == 404 and code_of(exc) != "NoSuchBucket"
                ):
                    return None
                raise self._error("read", full, exc) from exc
            except Exception as exc:
                raise self._error("read", full, exc) from exc
            try:
                async with response["Body"] as body:
                    data = await body.read()
            except (BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                # botocore's retries end when the headers arrive; a body cut
                # off or stalled midway is retried here, as a whole new GET.
                if attempt == _BODY_ATTEMPTS:
                    raise self._error("read", full, exc) from exc
                await asyncio.sleep(min(1.0, 0.1 * 2 ** (attempt - 1)) * (0.5 + random.random()))
                continue
            except Exception as exc:
                raise self._error("read", full, exc) from exc
            return Blob(bytes(data), str(response["ETag"]))
        raise AssertionError("unreachable")  # pragma: no cover

    async def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_version: str | None = None,
    ) -> str:
        full = self._key(key)
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        if if_absent and if_version is not None:
            raise ConfigurationError("write: if_absent and if_version are mutually exclusive")
        conditions: dict[str, str] = {}
        if if_absent:
            conditions["IfNoneMatch"] = "*"
        elif if_version is not None:
            conditions["IfMatch"] = if_version
        client = await self.client()
        try:
            response = await client.put_object(
                Bucket=self.bucket,
                Key=full,
                Body=data,
                ContentType=_content_type(full),
                **conditions,
            )
        except ClientError as exc:
            if conditions and self._is_precondition(exc, if_version is not None):
                # A request re-sent after a lost answer (by botocore, or by
                # aiohttp below it, invisibly) fails its own precondition: the
                # object then holds exactly our bytes, and we did win.
                won = await self._reconcile(key, data)
                if won is not None:
                    return won
                await self._require_bucket("write", full)
                what = "already exists" if if_absent else f"is not at version {if_version}"
                raise PreconditionFailed(f"{self._where(full)} {what}") from exc
            raise self._error("write", full, exc) from exc
        except Exception as exc:
            raise self._error("write", full, exc) from exc
        return str(response["ETag"])

    async def _require_bucket(self, op: str, full_key: str) -> None:
        """Make sure a lost precondition is not a missing bucket in disguise.

        Some servers (SeaweedFS) check ``If-Match`` before the bucket exists,
        so a typo in the bucket name would read as "another runner won".
        Checked once per storage object, on the first precondition failure.
        """
        if self._bucket_checked:
            return
        client = await self.client()
        try:
            await client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if status_of(exc) == 404 or code_of(exc) in ("NoSuchBucket", "404"):
                raise StorageError(
                    f"S3 {op} {self._where(full_key)} failed: bucket {self.bucket!r} does not exist"
                ) from exc
            if status_of(exc) != 403:  # no ListBucket right is fine: the 412 stands
                raise self._error(op, full_key, exc) from exc
        except Exception as exc:
            raise self._error(op, full_key, exc) from exc
        self._bucket_checked = True

    async def _reconcile(self, key: str, data: bytes) -> str | None:
        """The stored version if the key holds exactly ``data``, else ``None``.

        Records that must not be confused (leases) carry a unique owner
        token, so equal bytes mean this writer's own earlier attempt.
        """
        blob = await self.read(key)
        if blob is not None and blob.data == data:
            return blob.version
        return None

    def _is_precondition(self, exc: Any, compare_and_swap: bool) -> bool:
        code, status = code_of(exc), status_of(exc)
        if code in PRECONDITION_CODES or status in (412, 409):
            return True
        # Some servers answer If-Match on a missing key with 404.
        return (
            compare_and_swap
            and code != "NoSuchBucket"
            and (code in MISSING_KEY_CODES or status == 404)
        )

    async def delete(self, key: str) -> None:
        full = self._key(key)
        client = await self.client()
        try:
            await client.delete_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if code_of(exc) in MISSING_KEY_CODES:
                return
            raise self._error("delete", full, exc) from exc
        except Exception as exc:
            raise self._error("delete", full, exc) from exc

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` with batch requests of up to 1000; missing keys are fine.

        Every key is validated before anything is deleted. A key the server
        refuses to delete raises ``StorageError`` naming it (and how many
        others failed) after the batch.
        """
        fulls = [self._key(key) for key in keys]
        if not fulls:
            return
        client = await self.client()
        for start in range(0, len(fulls), _DELETE_BATCH):
            batch = fulls[start : start + _DELETE_BATCH]
            try:
                response = await client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except Exception as exc:
                raise self._error("delete", f"{batch[0]} (+{len(batch) - 1} more)", exc) from exc
            errors = [e for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageError(
                    f"S3 delete of {self._where(str(first.get('Key')))} failed: "
                    f"{first.get('Code')}: {first.get('Message')}"
                    + (f" ({len(errors) - 1} more keys failed)" if len(errors) > 1 else "")
                )

    async def list(self, prefix: str) -> AsyncIterator[str]:
        """Yield keys under ``prefix`` (relative to the storage root), sorted.

        All pages are fetched first (ListObjectsV2, 1000 keys a page) and
        sorted here, because S3-compatible servers do not all agree on
        listing order; a failure on any page raises before anything is
        yielded, so a caller never acts on a silently truncated listing.
        """
        for key, _ in await self._listed(prefix):
            yield key

    async def list_versions(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        """``list`` with each key's ETag, from the same pages (``list_versions``)."""
        for item in await self._listed(prefix):
            yield item

    async def _listed(self, prefix: str) -> builtins.list[tuple[str, str]]:
        full_prefix = self.prefix + _check_list_prefix(prefix)
        client = await self.client()
        found: builtins.list[tuple[str, str]] = []
        skip = len(self.prefix)
        try:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                found.extend(
                    (item["Key"][skip:], str(item.get("ETag", "")))
                    for item in page.get("Contents", ())
                )
        except Exception as exc:
            raise self._error("list", full_prefix + "*", exc) from exc
        found.sort()
        return found

    async def list_children(self, prefix: str) -> AsyncIterator[str]:
        """The next path segments under ``prefix``: ListObjectsV2 with ``Delimiter="/"``."""
        full_prefix = self.prefix + _check_list_prefix(check_children_prefix(prefix))
        client = await self.client()
        found: set[str] = set()
        try:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(
                Bucket=self.bucket, Prefix=full_prefix, Delimiter="/"
            ):
                found.update(
                    p["Prefix"][len(full_prefix) :] for p in page.get("CommonPrefixes", ())
                )
                found.update(item["Key"][len(full_prefix) :] for item in page.get("Contents", ()))
        except Exception as exc:
            raise self._error("list", full_prefix + "*", exc) from exc
        for segment in sorted(found):
            yield segment

    def _error(self, op: str, full_key: str, exc: Exception) -> AsyncflowError:
        return translate(op, self._where(full_key), self.bucket, exc)

    def __repr__(self) -> str:
        return f"StorageS3(bucket={self.bucket!r}, prefix={self.prefix!r})"
