"""Checkpoint records: exact round-trips, and every corrupt or foreign record refused by key."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncflow import CheckpointCorrupt, SerializationError, StorageError
from asyncflow._core.records import clear_workflow, load_records
from asyncflow._kernel.checkpoint import (
    FORMAT,
    CheckpointRecord,
    encode_output,
    encode_record,
)
from asyncflow._kernel.codec import digest, dumps
from asyncflow._kernel.decoding import decode_record
from asyncflow._kernel.layout import manifest_key, task_prefix, task_storage_key
from asyncflow._kernel.manifest import Manifest, fingerprint_of
from asyncflow._kernel.serializers import (
    TAG,
    JSONSerializer,
    PickleSerializer,
    Serializer,
    untagged,
)
from asyncflow.providers import Blob, Storage, StorageDefault, StorageFile

JSON: dict[str, Serializer] = {"json": JSONSerializer()}
KEY = b"0123456789abcdef-signing-key"
WHERE = "wf/tasks/0.json"

OUTPUT = {"rows": [1, 2.5, None, "\u00e9\ud800"], "when": dt.date(2024, 1, 2), "pair": (1, "a")}


def make(
    output: Any = OUTPUT,
    *,
    workflow_id: str = "wf",
    key: str = "0",
    serializer: Serializer | None = None,
    signing_key: bytes | None = None,
    input_digest: str | None = "abc",
) -> bytes:
    serializer = serializer or JSONSerializer()
    return encode_record(
        workflow_id=workflow_id,
        key=key,
        task_id=3,
        step="extract",
        module="etl.steps",
        attempts=2,
        started_at=100.0,
        finished_at=101.5,
        input_digest=input_digest,
        code_hash="c0de",
        serializer=serializer.name,
        output=encode_output(serializer, output, "extract"),
        signing_key=signing_key,
    )


def decode(
    data: bytes,
    *,
    where: str = WHERE,
    workflow_id: str = "wf",
    key: str = "0",
    serializers: dict[str, Serializer] = JSON,
    signing_key: bytes | None = None,
) -> CheckpointRecord:
    return decode_record(
        data,
        where=where,
        workflow_id=workflow_id,
        key=key,
        serializers=serializers,
        signing_key=signing_key,
    )


def corrupt(data: bytes, match: str = "", **kwargs: Any) -> CheckpointCorrupt:
    """Assert ``data`` is refused as corrupt, naming the storage key."""
    with pytest.raises(CheckpointCorrupt) as caught:
        decode(data, **kwargs)
    where = kwargs.get("where", WHERE)
    assert caught.value.key == where
    assert where in str(caught.value)
    assert match in str(caught.value)
    return caught.value


def edited(change: Any) -> bytes:
    """A record rewritten by hand: ``change(raw)`` edits the parsed JSON in place."""
    raw = json.loads(make())
    change(raw)
    return dumps(raw)


# --- layout ---------------------------------------------------------------------------


def test_layout_keys() -> None:
    assert task_prefix("wf") == "wf/tasks/"
    assert task_storage_key("wf", "load") == "wf/tasks/load.json"
    assert manifest_key("wf") == "wf/run.json"


# --- round trip -----------------------------------------------------------------------


def test_record_round_trip() -> None:
    record = decode(make())
    assert record == CheckpointRecord(
        workflow_id="wf",
        key="0",
        task_id=3,
        step="extract",
        module="etl.steps",
        attempts=2,
        started_at=100.0,
        finished_at=101.5,
        input_digest="abc",
        output_digest=record.output_digest,
        code_hash="c0de",
        serializer="json",
        output=OUTPUT,
    )
    assert type(record.output["pair"]) is tuple
    assert type(record.output["when"]) is dt.date


def test_record_is_readable_json_with_metadata() -> None:
    raw = json.loads(make())
    assert raw["asyncflow"] == FORMAT == 1
    assert raw["status"] == "completed"
    assert raw["output_digest"] == digest(dumps(raw["output"]))


@pytest.mark.parametrize("output", [None, [], {}, 0, "", [None], {"": None}, float("inf")])
def test_empty_and_none_outputs_round_trip(output: Any) -> None:
    assert decode(make(output, input_digest=None)).output == output
    assert decode(make(output)).input_digest == "abc"


def test_pickle_record_round_trip() -> None:
    pickle = PickleSerializer()
    record = decode(make(1j, serializer=pickle), serializers={"pickle": pickle})
    assert record.output == 1j
    assert record.serializer == "pickle"


def test_encode_output_names_the_step_and_type() -> None:
    with pytest.raises(
        SerializationError, match=r"step load: cannot encode output of type .*object"
    ):
        encode_output(JSONSerializer(), object(), "load")
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match=r"step load: .*reference cycle"):
        encode_output(JSONSerializer(), loop, "load")
    encoded = encode_output(JSONSerializer(), [1], "load")
    assert encoded.payload == b"[1]"
    assert encoded.digest == digest(b"[1]")


class LooseSerializer:
    """A user serializer that hands back something JSON cannot hold."""

    name = "loose"

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, payload: Any) -> Any:
        return payload


@pytest.mark.parametrize("value", [object(), float("nan"), 10**5000], ids=["object", "nan", "huge"])
def test_encode_output_turns_any_json_failure_into_serialization_error(value: Any) -> None:
    with pytest.raises(SerializationError, match="step s: "):
        encode_output(LooseSerializer(), value, "s")


# --- corrupt bytes --------------------------------------------------------------------


def test_every_truncation_is_corrupt() -> None:
    data = make()
    for end in range(len(data)):
        corrupt(data[:end])


def bit_flips(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            yield bytes(flipped)


def test_bit_flips_never_change_the_output_silently() -> None:
    """Unsigned, metadata outside the output may change undetected; the output never does."""
    data = make()
    refused = 0
    for flipped in bit_flips(data):
        try:
            record = decode(flipped)
        except CheckpointCorrupt as exc:
            keys = {exc.key}
            refused += 1
        else:
            assert record.output == OUTPUT
            assert record.workflow_id == "wf"
            assert record.key == "0"
    assert refused > len(data) * 4  # most flips are caught
    assert keys == {WHERE}


def test_every_bit_flip_of_a_signed_record_is_corrupt() -> None:
    data = make(signing_key=KEY)
    for flipped in bit_flips(data):
        corrupt(flipped, signing_key=KEY)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\xff\xfe{}", b"hello", b"{", b'{"asyncflow":1', b"\x80abc", b"[" * 100_000],
    ids=["empty", "nul", "bom", "text", "brace", "cut", "not-utf8", "deep"],
)
def test_not_json_is_corrupt(data: bytes) -> None:
    corrupt(data, "is not valid JSON")


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        "1",
        '"x"',
        "null",
        "{}",
        '{"asyncflow":"1"}',
        '{"asyncflow":true}',
        '{"asyncflow":1.0}',
        '{"asyncflow":0}',
        '{"asyncflow":-1}',
        '{"version":1}',
    ],
)
def test_json_that_is_not_a_record_is_corrupt(body: str) -> None:
    corrupt(body.encode(), "is not an asyncflow checkpoint record")


FIELDS = [
    "workflow_id",
    "key",
    "task_id",
    "step",
    "module",
    "attempts",
    "started_at",
    "finished_at",
    "input_digest",
    "output_digest",
    "code_hash",
    "serializer",
]


@pytest.mark.parametrize("field", [*FIELDS, "output"])
def test_missing_field_is_corrupt_naming_it(field: str) -> None:
    corrupt(edited(lambda raw: raw.pop(field)), f"field {field!r} is missing")


WRONG_TYPES: dict[str, list[Any]] = {
    "workflow_id": [1, None, ["wf"]],
    "key": [0, None],
    "task_id": ["3", 3.0, True, None],
    "step": [1, None],
    "module": [None, 2],
    "attempts": ["2", 2.0, False],
    "started_at": ["100", None, True],
    "finished_at": ["x", [], False],
    "input_digest": [5, ["abc"], False],
    "output_digest": [None, 1],
    "code_hash": [None, 0],
    "serializer": [None, 1, ["json"]],
}


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for f, values in WRONG_TYPES.items() for v in values]
)
def test_wrong_field_type_is_corrupt_naming_it(field: str, value: Any) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw[field] = value

    corrupt(edited(change), f"field {field!r} is missing or has the wrong type")


def test_timestamp_too_large_for_a_float_is_corrupt_naming_it() -> None:
    """A huge whole-number timestamp used to escape as ``OverflowError``."""
    huge = ("1" + "0" * 400).encode()
    data = make().replace(b'"started_at":100.0', b'"started_at":' + huge)
    corrupt(data, "field 'started_at' is too large for a float")
    data = make().replace(b'"finished_at":101.5', b'"finished_at":' + huge)
    corrupt(data, "field 'finished_at' is too large for a float")


def test_hand_written_record_decodes_to_the_same_record() -> None:
    """Off the fast path (whole-number timestamps, other field order, whitespace, a
    BOM, UTF-16) a record still decodes as ``json.loads`` reads it."""
    canonical = decode(make())
    raw = json.loads(make())
    raw["started_at"], raw["finished_at"] = 100, 102
    text = json.dumps(dict(reversed(list(raw.items()))), indent=1)
    record = decode(text.encode())
    assert (record.started_at, record.finished_at) == (100.0, 102.0)
    assert type(record.started_at) is float
    assert type(record.finished_at) is float
    assert record.output == canonical.output
    assert record.output_digest == canonical.output_digest
    for variant in (make() + b"\n", b"\xef\xbb\xbf" + make(), make().decode().encode("utf-16")):
        assert decode(variant) == canonical
    corrupt(make() + b" x", "Extra data")
    corrupt(make().decode().encode("utf-16-le")[:-1], "is not valid JSON")


def test_nan_or_infinity_literal_is_corrupt() -> None:
    data = make([1.0]).replace(b'"output":[1.0]', b'"output":[NaN]')
    assert b"NaN" in data
    corrupt(data, "NaN is not valid")
    corrupt(make().replace(b'"started_at":100.0', b'"started_at":Infinity'), "Infinity")


def test_hand_edited_output_fails_its_digest() -> None:
    data = make({"total": 10})
    tampered = data.replace(b'"total":10', b'"total":11')
    assert tampered != data
    corrupt(tampered, "output does not match its digest")


def test_hand_edited_digest_fails() -> None:
    corrupt(edited(lambda raw: raw.update(output_digest="0" * 32)), "does not match its digest")


def test_output_with_a_bad_tag_is_corrupt_even_with_a_matching_digest() -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["output"] = {TAG: "nope", "v": 1}
        raw["output_digest"] = digest(dumps(raw["output"]))

    corrupt(edited(change), "cannot decode output")


def test_untagged_output_skips_the_decoder_and_tagged_output_does_not() -> None:
    plain = {"rows": [1, 2.5, None, "x"], "nested": {"a": [True]}}
    assert untagged(dumps(plain))
    assert decode(make(plain)).output == plain
    assert not untagged(dumps(JSONSerializer().encode((1, 2))))
    assert decode(make({"pair": (1, 2)})).output == {"pair": (1, 2)}


def test_a_tag_spelled_with_unicode_escapes_is_still_decoded() -> None:
    """A hand-written record may escape the tag's letters; it must not pass as plain JSON."""
    escaped = TAG.replace("a", "\\u0061")
    payload = ('{"' + escaped + '":"tuple","v":[1,2]}').encode()
    assert TAG.encode() not in payload
    assert json.loads(payload) == {TAG: "tuple", "v": [1, 2]}

    def change(raw: dict[str, Any]) -> None:
        raw["output"] = "PLACEHOLDER"
        raw["output_digest"] = digest(payload)

    data = edited(change).replace(b'"PLACEHOLDER"', payload)
    assert decode(data).output == (1, 2)


# --- foreign and newer records --------------------------------------------------------


def test_record_of_another_workflow_is_corrupt() -> None:
    error = corrupt(make(workflow_id="other"), "belongs to workflow 'other'")
    assert "not 'wf'" in str(error)


def test_record_of_another_key_is_corrupt() -> None:
    corrupt(make(key="1"), "key '1'")


def test_record_copied_to_another_path_is_corrupt() -> None:
    corrupt(make(), where="wf/tasks/load.json", key="load")


def test_newer_format_asks_for_an_upgrade() -> None:
    data = edited(lambda raw: raw.update(asyncflow=3))
    error = corrupt(data, "format 3")
    assert "upgrade asyncflow" in str(error)
    # format 2 (an offloaded output) must hold a well-formed blob reference
    corrupt(edited(lambda raw: raw.update(asyncflow=2)), "blob reference is malformed")
    # even when the rest of the newer record is unknown to this version
    corrupt(b'{"asyncflow":7,"whatever":true}', "upgrade asyncflow")


# --- serializers ----------------------------------------------------------------------

UNPICKLED: list[str] = []


def _side_effect() -> str:
    UNPICKLED.append("ran")
    return "pwned"


class Evil:
    def __reduce__(self) -> Any:
        return (_side_effect, ())


def test_pickle_record_is_refused_without_unpickling_when_only_json_is_configured() -> None:
    data = make(Evil(), serializer=PickleSerializer())
    UNPICKLED.clear()
    corrupt(data, "'pickle' serializer")
    assert UNPICKLED == []
    # sanity: the payload really would run code if unpickled
    assert decode(data, serializers={"pickle": PickleSerializer()}).output == "pwned"
    assert UNPICKLED == ["ran"]


def test_json_record_is_refused_when_only_pickle_is_configured() -> None:
    corrupt(make(), "'json' serializer", serializers={"pickle": PickleSerializer()})


# --- signing --------------------------------------------------------------------------


def test_signed_record_round_trip() -> None:
    data = make(signing_key=KEY)
    assert data.startswith(b"asyncflow-hmac-sha256:")
    assert decode(data, signing_key=KEY).output == OUTPUT


def test_signed_record_with_tampered_metadata_is_refused() -> None:
    data = make(signing_key=KEY)
    tampered = data.replace(b'"step":"extract"', b'"step":"exfil!!"')
    assert tampered != data
    corrupt(tampered, "bad signature", signing_key=KEY)


def test_signed_record_with_tampered_output_is_refused() -> None:
    data = make({"total": 10}, signing_key=KEY)
    corrupt(data.replace(b'"total":10', b'"total":11'), "bad signature", signing_key=KEY)


def test_forged_signature_line_is_refused() -> None:
    data = make(signing_key=KEY)
    line, _, body = data.partition(b"\n")
    corrupt(line[:-4] + b"0000\n" + body, "bad signature", signing_key=KEY)
    corrupt(b"asyncflow-hmac-sha256:" + body, "bad signature", signing_key=KEY)


def test_record_signed_with_another_key_is_refused() -> None:
    corrupt(make(signing_key=b"another-key-0123456789"), "bad signature", signing_key=KEY)


def test_unsigned_record_is_refused_when_a_key_is_set() -> None:
    corrupt(make(), "is not signed but a signing_key is set", signing_key=KEY)


def test_signed_record_is_refused_without_a_key() -> None:
    corrupt(make(signing_key=KEY), "is signed; configure Config(signing_key=...)")


def test_validly_signed_foreign_record_is_still_refused() -> None:
    corrupt(make(workflow_id="other", signing_key=KEY), "belongs to workflow", signing_key=KEY)


# --- load_records ---------------------------------------------------------------------


class Spy:
    """Wraps a storage and records what is listed and read; can fail reads."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.reads: list[str] = []
        self.lists: list[str] = []
        self.fail_reads = False
        self.vanished: set[str] = set()

    @property
    def persistent(self) -> bool:
        return self.inner.persistent

    async def read(self, key: str) -> Blob | None:
        self.reads.append(key)
        if self.fail_reads:
            raise StorageError(f"cannot read {key}")
        if key in self.vanished:
            return None
        return await self.inner.read(key)

    async def write(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> str:
        return await self.inner.write(key, data, if_absent=if_absent, if_version=if_version)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        self.lists.append(prefix)
        async for key in self.inner.list(prefix):
            yield key

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(params=["memory", "file"])
async def spy(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Spy]:
    inner: Storage = StorageDefault() if request.param == "memory" else StorageFile(tmp_path)
    wrapped = Spy(inner)
    await wrapped.write("wf/tasks/0.json", make(["zero"]))
    await wrapped.write("wf/tasks/load.json", make({"n": 1}, key="load"))
    await wrapped.write("wf/tasks/unwanted.json", b"garbage that is never read")
    await wrapped.write("wf/tasks/0.json.bak", b"garbage")
    await wrapped.write("wf/run.json", b"{}")
    await wrapped.write("wf/lease.json", b"{}")
    await wrapped.write("wf2/tasks/0.json", b"garbage of a workflow sharing the prefix")
    yield wrapped
    await wrapped.aclose()


@pytest.mark.anyio
async def test_load_records_reads_only_wanted_keys(spy: Spy) -> None:
    records = await load_records(spy, "wf", ["0", "load", "missing"], serializers=JSON)
    assert sorted(records) == ["0", "load"]
    assert records["0"].output == ["zero"]
    assert records["load"].output == {"n": 1}
    assert spy.lists == ["wf/tasks/"]
    assert sorted(spy.reads) == ["wf/tasks/0.json", "wf/tasks/load.json"]


@pytest.mark.anyio
@pytest.mark.parametrize("concurrency", [0, 1, 32])
async def test_load_records_with_any_concurrency_reads_all(spy: Spy, concurrency: int) -> None:
    records = await load_records(
        spy, "wf", ["0", "load"], serializers=JSON, concurrency=concurrency
    )
    assert sorted(records) == ["0", "load"]


@pytest.mark.anyio
async def test_load_records_with_nothing_stored(spy: Spy) -> None:
    assert await load_records(spy, "nothing", ["0"], serializers=JSON) == {}
    assert await load_records(spy, "wf", [], serializers=JSON) == {}
    assert spy.reads == []


@pytest.mark.anyio
async def test_load_records_raises_corrupt_for_a_corrupt_record(spy: Spy) -> None:
    await spy.write("wf/tasks/load.json", b'{"asyncflow":1,"truncat')
    with pytest.raises(CheckpointCorrupt) as caught:
        await load_records(spy, "wf", ["0", "load"], serializers=JSON)
    assert caught.value.key == "wf/tasks/load.json"


@pytest.mark.anyio
async def test_load_records_raises_corrupt_for_a_foreign_record(spy: Spy) -> None:
    await spy.write("wf/tasks/load.json", make(key="other"))
    with pytest.raises(CheckpointCorrupt, match="belongs to workflow 'wf' key 'other'"):
        await load_records(spy, "wf", ["0", "load"], serializers=JSON)


@pytest.mark.anyio
async def test_load_records_never_turns_a_read_failure_into_missing(spy: Spy) -> None:
    spy.fail_reads = True
    with pytest.raises(StorageError, match="cannot read wf/tasks/"):
        await load_records(spy, "wf", ["0", "load"], serializers=JSON)


@pytest.mark.anyio
async def test_load_records_skips_a_record_deleted_after_listing(spy: Spy) -> None:
    spy.vanished.add("wf/tasks/load.json")
    records = await load_records(spy, "wf", ["0", "load"], serializers=JSON)
    assert sorted(records) == ["0"]


@pytest.mark.anyio
async def test_load_records_checks_signatures(spy: Spy) -> None:
    with pytest.raises(CheckpointCorrupt, match="is not signed"):
        await load_records(spy, "wf", ["0"], serializers=JSON, signing_key=KEY)
    await spy.write("wf/tasks/0.json", make(["signed"], signing_key=KEY))
    records = await load_records(spy, "wf", ["0"], serializers=JSON, signing_key=KEY)
    assert records["0"].output == ["signed"]


@pytest.mark.anyio
async def test_bit_rot_on_disk_is_corrupt(tmp_path: Path) -> None:
    storage = StorageFile(tmp_path)
    await storage.write("wf/tasks/0.json", make({"total": 10}))
    path = tmp_path / "wf" / "tasks" / "0.json"
    path.write_bytes(path.read_bytes().replace(b'"total":10', b'"total":90'))
    with pytest.raises(CheckpointCorrupt, match="does not match its digest") as caught:
        await load_records(storage, "wf", ["0"], serializers=JSON)
    assert caught.value.key == "wf/tasks/0.json"


@pytest.mark.anyio
async def test_clear_workflow_keeps_the_lease(spy: Spy) -> None:
    assert await clear_workflow(spy, "wf", tasks_only=True) == 3
    bak = "wf/tasks/0.json.bak"  # not a record of the layout: never deleted
    assert [k async for k in spy.list("wf/")] == ["wf/lease.json", "wf/run.json", bak]
    assert await clear_workflow(spy, "wf") == 1
    assert [k async for k in spy.list("wf/")] == ["wf/lease.json", bak]
    assert [k async for k in spy.list("wf2/")] == ["wf2/tasks/0.json"]


# --- manifest -------------------------------------------------------------------------

MANIFEST = Manifest(
    workflow_id="wf",
    status="running",
    fingerprint="f" * 64,
    mode="parallel",
    tasks=("0", "load"),
    created_at=1.0,
    updated_at=2.5,
)


def test_manifest_round_trip() -> None:
    assert Manifest.decode(MANIFEST.encode(), "wf/run.json") == MANIFEST
    no_fingerprint = MANIFEST.replace(fingerprint=None, tasks=())
    assert Manifest.decode(no_fingerprint.encode(), "wf/run.json") == no_fingerprint


def test_manifest_replace_touches_updated_at_only() -> None:
    later = MANIFEST.replace(status="completed")
    assert later.status == "completed"
    assert later.updated_at > MANIFEST.updated_at
    assert later.created_at == MANIFEST.created_at
    assert later.tasks == MANIFEST.tasks


def _manifest_raw() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(MANIFEST.encode())
    return raw


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "is malformed"),
        (b"\xff", "is malformed"),
        (b"[]", "not an asyncflow run manifest"),
        (b'{"asyncflow":2}', "upgrade"),
        (b'{"asyncflow":1}', "field 'workflow_id'"),
        (dumps({**_manifest_raw(), "tasks": "0"}), "field 'tasks'"),
        (dumps({**_manifest_raw(), "tasks": [0, 1]}), "list of strings"),
        (dumps({**_manifest_raw(), "fingerprint": 1}), "field 'fingerprint'"),
        (dumps({**_manifest_raw(), "created_at": "now"}), "field 'created_at'"),
        (MANIFEST.encode().replace(b'"created_at":1.0', b'"created_at":NaN'), "NaN"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_manifest_corrupt(data: bytes, match: str) -> None:
    with pytest.raises(CheckpointCorrupt, match=match) as caught:
        Manifest.decode(data, "wf/run.json")
    assert caught.value.key == "wf/run.json"
    assert "wf/run.json" in str(caught.value)


# --- fingerprint ----------------------------------------------------------------------


def test_fingerprint_is_stable_and_hex() -> None:
    ser = JSONSerializer()
    first = fingerprint_of([{"a": 1}, None, (1, 2)], ser)
    assert first == fingerprint_of([{"a": 1}, None, (1, 2)], ser)
    assert first == fingerprint_of(iter([{"a": 1}, None, (1, 2)]), ser)
    assert len(first) == 64
    int(first, 16)


def test_fingerprint_of_equal_sets_does_not_depend_on_insertion_order() -> None:
    ser = JSONSerializer()
    words = [f"w{i}" for i in range(200)]
    backward_set: set[str] = set()
    for word in reversed(words):
        backward_set.add(word)
    forward = {frozenset(words): set(words)}
    backward = {frozenset(reversed(words)): backward_set}
    assert fingerprint_of([forward], ser) == fingerprint_of([backward], ser)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([{"a": 1}], [{"a": 2}]),
        ([1], [1.0]),
        ([1], [True]),
        ([[1, 2]], [(1, 2)]),
        ([{1: "a"}], [{"1": "a"}]),
        ([None], [None, None]),
        ([None], []),
        (["a", "b"], ["ab"]),
        ([b"x"], [bytearray(b"x")]),
    ],
)
def test_fingerprint_differs_for_different_inputs(a: list[Any], b: list[Any]) -> None:
    ser = JSONSerializer()
    assert fingerprint_of(a, ser) != fingerprint_of(b, ser)


@pytest.mark.parametrize("value", [object(), {"k": {1, object()}}, lambda: 1])
def test_fingerprint_refuses_unencodable_values(value: Any) -> None:
    with pytest.raises(SerializationError, match=r"pass start\(fingerprint=\.\.\.\)") as caught:
        fingerprint_of([value], JSONSerializer())
    assert "cannot fingerprint the initial contexts" in str(caught.value)


def test_fingerprint_refuses_cycles() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="cannot fingerprint"):
        fingerprint_of([loop], JSONSerializer())


def test_decoded_records_are_built_field_by_field_like_the_dataclass() -> None:
    """``_record`` sets the slots directly: every field must land in its own slot."""
    from asyncflow._kernel.checkpoint import make_record as _record

    fields = ("wf", "k", 7, "step", "mod", 3, 1.5, 2.5, "din", "dout", "code", "json")
    for output, blob in (([1], None), (None, ("ab" * 32, 10))):
        fast = _record(fields, output, blob)
        assert fast == CheckpointRecord(*fields, output=output, blob=blob)
        assert repr(fast) == repr(CheckpointRecord(*fields, output=output, blob=blob))
