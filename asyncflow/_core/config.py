"""``Config``: where checkpoints go and how they are written."""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncflow._core.errors import ConfigurationError
from asyncflow._core.storage import Storage
from asyncflow.providers.memory import StorageDefault
from asyncflow.serializers import JSONSerializer, Serializer

__all__ = ["Config"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Settings shared by every run of a flow.

    ``signing_key`` adds an HMAC-SHA256 to each record; a record whose bytes
    were changed by anyone without the key is refused as corrupt.
    ``read_concurrency`` bounds the concurrent reads of a resume.
    """

    storage: Storage = field(default_factory=StorageDefault)
    serializer: Serializer = field(default_factory=JSONSerializer)
    signing_key: bytes | None = None
    read_concurrency: int = 32

    def __post_init__(self) -> None:
        for method in ("read", "write", "delete", "list", "aclose"):
            if not callable(getattr(self.storage, method, None)):
                raise ConfigurationError(
                    f"Config storage {self.storage!r} does not implement {method}()"
                    " of the asyncflow Storage protocol"
                )
        if not isinstance(self.serializer, Serializer):
            raise ConfigurationError(
                f"Config serializer {self.serializer!r} needs name, encode() and decode()"
            )
        if self.signing_key is not None and (
            not isinstance(self.signing_key, bytes) or len(self.signing_key) < 16
        ):
            raise ConfigurationError("Config signing_key must be bytes of at least 16 bytes")
        if type(self.read_concurrency) is not int or self.read_concurrency < 1:
            raise ConfigurationError(
                f"Config read_concurrency must be an int >= 1, got {self.read_concurrency!r}"
            )
