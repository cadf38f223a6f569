"""``Config``: where checkpoints go and how they are written."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from asyncflow._core.executor import Executor
from asyncflow._kernel.capabilities import require_storage
from asyncflow._kernel.durations import parse_duration
from asyncflow._kernel.errors import ConfigurationError
from asyncflow._kernel.serializers import JSONSerializer, Serializer
from asyncflow._kernel.storage import Storage
from asyncflow.providers.memory import StorageDefault

if TYPE_CHECKING:
    from asyncflow._core.clock import Clock

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "DEFAULT_PACK_MIN_RECORDS", "Config"]

#: The default ``Config.max_output_bytes``: 64 MiB of encoded JSON. Every
#: output restored by a resume is held in memory, and object stores take one
#: request per record; larger data belongs in files or buckets of its own.
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024
#: The default ``Config.pack_min_records``: below it a pack saves a resume
#: little (a few reads in flight at once) and costs every run's end a listing
#: and a write.
DEFAULT_PACK_MIN_RECORDS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Settings shared by every run of a flow.

    ``signing_key`` adds an HMAC-SHA256 to each record; a record whose bytes
    were changed by anyone without the key is refused as corrupt.
    ``read_concurrency`` bounds the concurrent reads of a resume.
    ``durability`` is when a checkpoint is durable: ``"sync"`` (before the
    next step), ``"async"`` (written while the next step runs; flushed by the
    end of the run) or ``"batch"`` (group commit of tasks finishing together);
    see ``asyncflow._core.commit`` for what each can lose in a crash.
    ``lease_ttl`` is how long a runner's lease on its workflow lasts without
    renewal (a crashed runner on another host blocks a resume that long);
    it is renewed every ``lease_renew`` seconds (default ``lease_ttl / 3``).
    ``retention`` (seconds, a ``timedelta`` or ``"7d"``) is how long the
    records of a finished workflow are kept; applied by the scheduler after
    each run and by ``asyncflow.prune`` (see ``asyncflow._core.retention``).
    ``executor`` runs each step's function elsewhere (``DaskExecutor`` from
    ``asyncflow.executors``); ``None`` (the default) runs it in this process.
    Checkpoints, leases, retries and timeouts stay with the runner either way.
    ``types`` registers your own classes (dataclasses, enums, NamedTuples,
    Pydantic models, msgspec Structs, attrs classes) so that outputs holding
    them round-trip exactly; a list of classes, or a dict of stored name to
    class (see docs/serialization.md). ``max_output_bytes`` refuses a step
    whose encoded output is larger, before anything is written (``None``: no
    limit). ``offload_over`` stores an output whose encoded size exceeds it
    once per workflow in ``{wf}/blobs/{sha256}``, referenced from its record
    (``None``, the default: never).
    ``clock`` is where durable waits read the time and sleep (``None``: the
    wall clock; tests pass ``asyncflow.schedule.ManualClock``);
    ``signal_poll`` is how often (seconds) a run blocked on a signal re-reads
    storage for one sent from another process.
    ``pack_min_records``: a run that ends with at least this many task
    records packs them into ``{wf}/pack/tasks.pack``, so that a resume reads
    one object instead of one per record (``None``: never pack; a storage
    without ``list_versions`` never packs). The records stay where they are.
    """

    storage: Storage = field(default_factory=StorageDefault)
    serializer: Serializer = field(default_factory=JSONSerializer)
    signing_key: bytes | None = None
    read_concurrency: int = 32
    lease_ttl: float = 30.0
    lease_renew: float | None = None
    durability: str = "sync"
    retention: float | timedelta | str | None = None
    executor: Executor | None = None
    types: Iterable[type] | Mapping[str, type] = ()
    max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES
    offload_over: int | None = None
    clock: Clock | None = None
    signal_poll: float = 1.0
    pack_min_records: int | None = DEFAULT_PACK_MIN_RECORDS

    @property
    def retention_seconds(self) -> float | None:
        return None if self.retention is None else parse_duration(self.retention)

    @property
    def lease_renew_every(self) -> float:
        return self.lease_renew if self.lease_renew is not None else self.lease_ttl / 3

    def __post_init__(self) -> None:
        require_storage(self.storage, "Config storage")
        if not isinstance(self.serializer, Serializer):
            raise ConfigurationError(
                f"Config serializer {self.serializer!r} needs name, encode() and decode()"
            )
        self._check_payloads()
        if self.signing_key is not None and (
            not isinstance(self.signing_key, bytes) or len(self.signing_key) < 16
        ):
            raise ConfigurationError("Config signing_key must be bytes of at least 16 bytes")
        for name in ("lease_ttl", "lease_renew", "signal_poll"):
            value = getattr(self, name)
            if value is None and name == "lease_renew":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"Config {name} must be a number of seconds > 0")
        if self.lease_renew_every >= self.lease_ttl:
            raise ConfigurationError("Config lease_renew must be shorter than lease_ttl")
        if self.durability not in ("sync", "async", "batch"):
            raise ConfigurationError(
                f"Config durability must be 'sync', 'async' or 'batch', got {self.durability!r}"
            )
        if self.clock is not None and not (
            callable(getattr(self.clock, "now", None))
            and callable(getattr(self.clock, "sleep_until", None))
        ):
            raise ConfigurationError(
                f"Config clock {self.clock!r} needs now() and sleep_until()"
                " (see asyncflow.schedule.ManualClock)"
            )
        if self.executor is not None and not callable(getattr(self.executor, "run", None)):
            raise ConfigurationError(
                f"Config executor {self.executor!r} has no run() (see asyncflow._core.executor)"
            )
        if self.retention is not None:
            parse_duration(self.retention)  # raises ConfigurationError if invalid
        if self.pack_min_records is not None and (
            type(self.pack_min_records) is not int or self.pack_min_records < 1
        ):
            raise ConfigurationError(
                "Config pack_min_records must be an int >= 1 or None,"
                f" got {self.pack_min_records!r}"
            )
        if type(self.read_concurrency) is not int or self.read_concurrency < 1:
            raise ConfigurationError(
                f"Config read_concurrency must be an int >= 1, got {self.read_concurrency!r}"
            )

    def _check_payloads(self) -> None:
        types = self.types
        if isinstance(types, (str, bytes)) or not isinstance(types, (Iterable, Mapping)):
            raise ConfigurationError(
                f"Config types must be a list of classes or a dict of name to class, got {types!r}"
            )
        types = types if isinstance(types, Mapping) else tuple(types)
        object.__setattr__(self, "types", types)
        if types:
            if not isinstance(self.serializer, JSONSerializer):
                raise ConfigurationError(
                    f"Config types apply to JSONSerializer; {self.serializer!r} stores"
                    " whatever it stores without them: drop types= or the serializer"
                )
            object.__setattr__(self, "serializer", self.serializer.with_types(types))
        for name in ("max_output_bytes", "offload_over"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise ConfigurationError(
                    f"Config {name} must be an int number of bytes >= 0 or None, got {value!r}"
                )
        if (
            self.offload_over is not None
            and self.max_output_bytes is not None
            and self.offload_over >= self.max_output_bytes
        ):
            raise ConfigurationError(
                f"Config offload_over ({self.offload_over:,}) must be below max_output_bytes"
                f" ({self.max_output_bytes:,}): no output over the limit is ever stored"
            )
