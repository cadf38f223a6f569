"""Registered types (``Config(types=[...])``): exact round-trips, never an import."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import sys
from decimal import Decimal
from typing import Any, NamedTuple

import anyio
import attrs
import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncflow import (
    AsyncFlow,
    CheckpointCorrupt,
    Config,
    ConfigurationError,
    Context,
    SerializationError,
    TaskStatus,
    action,
)
from asyncflow._core.records import load_records
from asyncflow._kernel.checkpoint import encode_output, encode_record
from asyncflow._kernel.codec import dumps
from asyncflow._kernel.registry import TypeRegistry
from asyncflow._kernel.serializers import TAG, JSONSerializer, PickleSerializer
from asyncflow.providers import Storage, StorageDefault
from tests.test_serializers import FUZZ, _scalars, assert_same, hashables, keys

# --- the user's types -----------------------------------------------------------------


@dataclasses.dataclass
class Box:
    item: Any
    label: str = "box"


@dataclasses.dataclass(frozen=True)
class FrozenBox:
    item: Any


@dataclasses.dataclass(slots=True)
class SlotBox:
    item: Any


class Pair(NamedTuple):
    item: Any
    n: int = 0


class Model(pydantic.BaseModel):
    item: Any
    note: str = ""


class Struct(msgspec.Struct):
    item: Any


@attrs.define
class AttrsBox:
    item: Any


@attrs.frozen
class FrozenAttrs:
    item: Any


class Color(enum.Enum):
    RED = 1
    GREEN = (2, "g")


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Kind(str, enum.Enum):
    A = "a"


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


BOXES: list[type] = [Box, FrozenBox, SlotBox, Pair, Model, Struct, AttrsBox, FrozenAttrs]
ENUMS: list[type] = [Color, Level, Kind, Perm]
ALL = BOXES + ENUMS
ser = JSONSerializer(types=ALL)


def round_trip(value: Any, serializer: JSONSerializer = ser) -> Any:
    return serializer.decode(json.loads(dumps(serializer.encode(value))))


def box(kind: type, inner: Any) -> Any:
    if kind is Pair:
        return Pair(inner, 3)
    return kind(item=inner)


members = st.sampled_from([*Color, *Level, *Kind, Perm.R | Perm.X, Perm.W, Perm(0)])
registered_values = st.recursive(
    _scalars(st.decimals()) | members,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(keys, inner, max_size=3),
        st.dictionaries(hashables | members, inner, max_size=2),
        st.frozensets(hashables | members, max_size=3),
        st.builds(box, st.sampled_from(BOXES), inner),
    ),
    max_leaves=20,
)


@FUZZ
@given(registered_values)
def test_registered_types_round_trip_exactly_nested_anywhere(value: Any) -> None:
    assert_same(value, round_trip(value))


@FUZZ
@given(registered_values)
def test_registered_encoding_is_deterministic(value: Any) -> None:
    first = dumps(ser.encode(value))
    assert dumps(ser.encode(round_trip(value))) == first


def test_each_kind_round_trips_with_its_own_type() -> None:
    when = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
    for kind in BOXES:
        value = box(kind, {"amount": Decimal("1.10"), "when": when, "pair": (1, 2)})
        back = round_trip(value)
        assert type(back) is kind
        assert_same(value, back)
    for member in [Color.GREEN, Level.HIGH, Kind.A, Perm.R | Perm.W]:
        back = round_trip(member)
        assert back is member


def test_the_stored_form_is_named_by_the_registry_not_imported() -> None:
    stored = ser.encode(Box(1))
    assert stored == {
        TAG: "type",
        "name": f"{__name__}.Box",
        "v": {"item": 1, "label": "box"},
    }
    # a dict of name -> class chooses the stored names (stable across module moves)
    named = JSONSerializer(types={"invoice": Box})
    assert named.encode(Box(1))["name"] == "invoice"
    assert type(round_trip(Box(2), named)) is Box


def test_decoding_never_imports_a_named_class() -> None:
    payload = {TAG: "type", "name": "os.system", "v": {"command": "true"}}
    with pytest.raises(ValueError, match=r"'os\.system', which is not registered"):
        ser.decode(payload)
    payload = {TAG: "type", "name": "never_imported_module_xyz.Thing", "v": {}}
    with pytest.raises(ValueError, match="not registered"):
        ser.decode(payload)
    assert "never_imported_module_xyz" not in sys.modules


def test_unregistered_type_is_refused_with_how_to_register() -> None:
    with pytest.raises(SerializationError, match=r"Config\(types=\[Box\]\)") as caught:
        JSONSerializer().encode({"rows": [Box(1)]})
    assert "output['rows'][0]" in str(caught.value)
    # registered, but holding an unregistered one: the message says where
    only_box = JSONSerializer(types=[Box])
    with pytest.raises(SerializationError, match=r"output\.item\['x'\] of type .*Pair"):
        only_box.encode(Box({"x": Pair(1)}))
    # a subclass of a registered class is a different type
    sub = type("SubBox", (Box,), {})
    with pytest.raises(SerializationError, match="SubBox"):
        only_box.encode(sub(1))


@pytest.mark.parametrize(
    "bad",
    [int, dict, "Box", Box(1), type("Plain", (), {}), lambda: None],
    ids=["int", "dict", "str", "instance", "plain-class", "function"],
)
def test_registering_what_cannot_round_trip_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot register|must be a list"):
        JSONSerializer(types=[bad] if not isinstance(bad, str) else bad)


def test_two_classes_with_one_name_are_refused() -> None:
    other = type("Box", (), {"__module__": __name__, "__qualname__": "Box"})
    other = dataclasses.dataclass(other)
    with pytest.raises(ConfigurationError, match="both named"):
        JSONSerializer(types=[Box, other])
    JSONSerializer(types={"a": Box, "b": other})  # told apart by explicit names


def test_init_does_not_run_twice_on_decode() -> None:
    """Converters / __post_init__ would re-apply to already-converted values."""

    @dataclasses.dataclass
    class Doubling:
        n: int
        twice: int = dataclasses.field(init=False)

        def __post_init__(self) -> None:
            self.twice = self.n * 2
            self.n += 1

    @attrs.define
    class Upper:
        text: str = attrs.field(converter=lambda s: s + "!")

    reg = JSONSerializer(types=[Doubling, Upper])
    d = Doubling(1)
    assert (d.n, d.twice) == (2, 2)
    assert round_trip(d, reg) == d
    assert round_trip(Upper("hi"), reg).text == "hi!"


def test_pydantic_keeps_fields_set_and_extras() -> None:
    class Loose(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        a: int = 1
        b: str = "x"

    reg = JSONSerializer(types=[Loose])
    value = Loose(b="y", extra_field=(1, 2))
    back = round_trip(value, reg)
    assert back == value
    assert back.model_fields_set == {"b", "extra_field"}
    assert back.model_extra == {"extra_field": (1, 2)}
    assert back.model_dump(exclude_unset=True) == value.model_dump(exclude_unset=True)


def test_class_changes_since_the_record_was_written() -> None:
    old = ser.encode(Box(1, "a"))
    # a field added with a default: the default
    assert round_trip(Model(item=1)) == Model(item=1)
    renamed = {**old, "v": {"item": 1, "gone": 2}}
    with pytest.raises(ValueError, match=r"'gone'.* no longer has"):
        ser.decode(renamed)
    lacking = {**old, "v": {"label": "a"}}
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['item'\]"):
        ser.decode(lacking)
    assert ser.decode({**old, "v": {"item": 5}}) == Box(5, "box")
    with pytest.raises(ValueError, match="no member with value 9"):
        ser.decode({TAG: "type", "name": ser.encode(Color.RED)["name"], "v": 9})


def test_config_types_build_the_serializer() -> None:
    config = Config(types=[Box, Color])
    assert isinstance(config.serializer, JSONSerializer)
    assert config.serializer.name == "json"  # old records still decode
    assert round_trip([Box(Color.RED)], config.serializer) == [Box(Color.RED)]
    base = JSONSerializer(types=[Pair])
    merged = Config(serializer=base, types=[Box]).serializer
    assert isinstance(merged, JSONSerializer)
    assert set(merged.registry.by_class) == {Pair, Box}
    # replace() (as the CLI's --storage does) keeps the registry, registering nothing twice
    replaced = dataclasses.replace(config, storage=StorageDefault())
    assert isinstance(replaced.serializer, JSONSerializer)
    assert set(replaced.serializer.registry.by_class) == {Box, Color}
    with pytest.raises(ConfigurationError, match="apply to JSONSerializer"):
        Config(serializer=PickleSerializer(), types=[Box])
    with pytest.raises(ConfigurationError, match="types must be"):
        Config(types="Box")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cannot register"):
        Config(types=[int])


def test_registry_needs_no_optional_library() -> None:
    """Pydantic, msgspec and attrs are recognised without being imported."""
    code = (
        "import sys, dataclasses, enum\n"
        "from asyncflow import Config\n"
        "@dataclasses.dataclass\nclass A:\n    x: int\n"
        "Config(types=[A])\n"
        "assert not {'pydantic', 'msgspec', 'attrs'} & set(sys.modules), sorted(sys.modules)\n"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


def test_record_naming_an_unregistered_type_is_corrupt_not_a_dict() -> None:
    encoded = encode_output(ser, Box(1), "step")
    data = encode_record(
        workflow_id="wf",
        key="k",
        task_id=0,
        step="step",
        module="m",
        attempts=1,
        started_at=1.0,
        finished_at=2.0,
        input_digest=None,
        code_hash="h",
        serializer="json",
        output=encoded,
    )

    async def load() -> Any:
        storage = StorageDefault()
        await storage.write("wf/tasks/k.json", data)
        return await load_records(storage, "wf", ["k"], serializers={"json": JSONSerializer()})

    with pytest.raises(CheckpointCorrupt, match=rf"'{__name__}\.Box', which is not registered"):
        anyio.run(load)


# --- through a flow -------------------------------------------------------------------


@pytest.mark.anyio
async def test_flow_resumes_registered_outputs(storage: Storage) -> None:
    ran: list[str] = []

    @action
    async def make() -> Any:
        ran.append("make")
        return Model(item=[Box(Color.GREEN), Pair((1, 2))], note="n")

    @action
    async def use(previous_context: Context) -> Any:
        ran.append("use")
        model = previous_context.storage
        assert type(model) is Model
        assert type(model.item[0]) is Box
        if len(ran) < 3:
            raise RuntimeError("fail once")
        return Struct(item=model)

    def build() -> AsyncFlow:
        flow = AsyncFlow(config=Config(storage=storage, types=ALL), workflow_id="registered")
        flow.task.add(step=make)
        flow.task.add(step=use)
        return flow

    first = build()
    await first.start(resume=True)
    assert [t.status for t in first.result_task()] == [TaskStatus.COMPLETED, TaskStatus.FAILED]
    second = build()
    await second.start(resume=True)
    assert ran == ["make", "use", "use"]
    assert second.result_task()[1].status is TaskStatus.COMPLETED
    out = second.result_storage()[-1]
    assert type(out) is Struct
    assert out.item == Model(item=[Box(Color.GREEN), Pair((1, 2))], note="n")


def test_registry_lookup_rejects_non_string_names() -> None:
    with pytest.raises(ValueError, match="not registered"):
        TypeRegistry([Box]).lookup(["list"])
