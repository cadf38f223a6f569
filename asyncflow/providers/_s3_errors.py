"""How S3's answers map onto asyncflow's errors (``StorageS3``).

Apart from the backend because it is a table of its own: which codes mean
"the condition did not hold", "no such key", "try later" or "refused",
and the one message per failure that names the operation, bucket and key.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from asyncflow._kernel.errors import (
    AsyncflowError,
    ConfigurationError,
    StorageError,
    StorageUnavailable,
)

__all__ = [
    "MISSING_KEY_CODES",
    "PRECONDITION_CODES",
    "code_of",
    "message_of",
    "status_of",
    "translate",
]

#: Error codes meaning "the condition did not hold"; 412 is the standard
#: answer, real S3 may answer 409 ConditionalRequestConflict when two
#: conditional writes to one key overlap.
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
    }
)
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
    }
)


def translate(op: str, where: str, bucket: str, exc: Exception) -> AsyncflowError:
    """Translate an SDK exception into asyncflow's error tree.

    The message names the operation, bucket and key, the service's code
    and message; never credentials (botocore does not put them in its
    messages, and nothing of the client configuration is added here).
    """
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        code, status = code_of(exc), status_of(exc)
        detail = f"{code} (HTTP {status}): {message_of(exc)}"
        if code == "NoSuchBucket":
            return StorageError(f"S3 {op} {where} failed: bucket {bucket!r} does not exist")
        if code in _THROTTLE_CODES or status == 429 or (status is not None and status >= 500):
            return StorageUnavailable(f"S3 {op} {where} failed after retries: {detail}")
        if code in _AUTH_CODES or status in (401, 403):
            return StorageError(
                f"S3 {op} {where} was refused: {detail}; check the credentials "
                "and the bucket policy"
            )
        return StorageError(f"S3 {op} {where} failed: {detail}")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(
            f"S3 {op} {where}: no usable AWS credentials were found "
            "(environment, ~/.aws, SSO or instance role)"
        )
    if isinstance(exc, ParamValidationError):
        return ConfigurationError(f"S3 {op} {where}: invalid request: {exc}")
    if isinstance(exc, (BotoCoreError, aiohttp.ClientError, OSError, asyncio.TimeoutError)):
        return StorageUnavailable(
            f"S3 {op} {where} failed: cannot reach the server: {type(exc).__name__}: {exc}"
        )
    return StorageError(f"S3 {op} {where} failed: {type(exc).__name__}: {exc}")


def code_of(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def status_of(exc: Any) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def message_of(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or "no message"
