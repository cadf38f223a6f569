"""The strict JSON serializer: exact round-trips or a clean refusal, never a silent change."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import json
import math
import os
import subprocess
import sys
import zoneinfo
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asyncflow import SerializationError
from asyncflow._kernel.codec import dumps
from asyncflow._kernel.codec import loads as checkpoint_loads
from asyncflow._kernel.registry import Registered, field_names, kind_of
from asyncflow._kernel.serializers import (
    MAX_DEPTH,
    TAG,
    JSONSerializer,
    PickleSerializer,
    Serializer,
)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_ser = JSONSerializer()


def round_trip(value: Any) -> Any:
    return json_ser.decode(json.loads(dumps(json_ser.encode(value))))


# --- a comparator that is stricter than == -------------------------------------------


def assert_same(a: Any, b: Any, path: str = "v") -> None:
    """Equal values of the *same* types, recursively; nan equals nan, -0.0 is not 0.0."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} became {type(b).__name__}"
    kind = kind_of(type(a))
    if kind is not None:  # a registered type: the same state, compared as strictly
        entry = Registered("", type(a), kind, field_names(type(a), kind))
        (state_a, more_a), (state_b, more_b) = entry.state(a), entry.state(b)
        assert_same(state_a, state_b, f"{path}<{kind}>")
        assert_same(more_a, more_b, f"{path}<{kind} extra>")
    elif type(a) is float:
        if math.isnan(a):
            assert math.isnan(b), f"{path}: nan became {b!r}"
        else:
            assert a == b, f"{path}: {a!r} != {b!r}"
            assert math.copysign(1, a) == math.copysign(1, b), f"{path}: {a!r} != {b!r}"
    elif type(a) is Decimal:
        assert a.as_tuple() == b.as_tuple(), f"{path}: {a!r} != {b!r}"
    elif type(a) in (list, tuple):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif type(a) is dict:
        assert len(a) == len(b), f"{path}: {len(a)} keys != {len(b)}"
        for i, ((ka, va), (kb, vb)) in enumerate(zip(a.items(), b.items(), strict=True)):
            assert_same(ka, kb, f"{path}<key {i}>")
            assert_same(va, vb, f"{path}<value {i}>")
    elif type(a) in (set, frozenset):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        unmatched = list(b)
        for item in a:
            for j, other in enumerate(unmatched):
                if _same(item, other):
                    del unmatched[j]
                    break
            else:
                raise AssertionError(f"{path}: {item!r} is missing from {b!r}")
    elif type(a) in (dt.datetime, dt.time):
        assert a.replace(tzinfo=None) == b.replace(tzinfo=None), f"{path}: {a!r} != {b!r}"
        assert a.utcoffset() == b.utcoffset(), f"{path}: offset {a!r} != {b!r}"
        assert a.tzname() == b.tzname(), f"{path}: tzname {a!r} != {b!r}"
        assert a.fold == b.fold, f"{path}: fold {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _same(a: Any, b: Any) -> bool:
    try:
        assert_same(a, b)
    except AssertionError:
        return False
    return True


def test_comparator_is_strict() -> None:
    """The comparator itself must catch the changes the serializer must never make."""
    for a, b in [
        ((1, 2), [1, 2]),
        (1, True),
        (1, 1.0),
        (0.0, -0.0),
        (Decimal("1.0"), Decimal("1.00")),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({1: "x"}, {"1": "x"}),
        (frozenset({1}), {1}),
        (b"x", bytearray(b"x")),
        (dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, fold=1)),
        (dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)),
        (dt.date(2020, 1, 1), dt.datetime(2020, 1, 1)),
    ]:
        assert not _same(a, b), (a, b)
    assert _same(float("nan"), float("nan"))
    assert _same({float("nan")}, {float("nan")})
    assert _same(Decimal("sNaN"), Decimal("sNaN"))


# --- strategies -------------------------------------------------------------------------

any_text = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates too
# beyond 2000 bits ints are stored as hex; the explicit examples go past 4300 digits
huge_ints = st.tuples(
    st.integers(min_value=1990, max_value=2100), st.integers(min_value=0), st.booleans()
).map(lambda t: (-1 if t[2] else 1) * (2 ** t[0] + t[1]))
ints = st.integers() | huge_ints
fixed_offsets = st.one_of(
    st.just(dt.timezone.utc),
    st.integers(min_value=-86399, max_value=86399).map(
        lambda s: dt.timezone(dt.timedelta(seconds=s))
    ),
    st.integers(min_value=-1439, max_value=1439).map(
        lambda m: dt.timezone(dt.timedelta(minutes=m))
    ),
)
datetimes = st.datetimes(timezones=st.none() | fixed_offsets).map(lambda d: d.replace(fold=0))
times = st.times(timezones=st.none() | fixed_offsets).map(lambda t: t.replace(fold=0))


def _scalars(decimals: st.SearchStrategy[Decimal]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        ints,
        st.floats(),  # nan, inf, -inf, -0.0 included
        any_text,
        st.binary(max_size=16),
        datetimes,
        st.dates(),
        times,
        st.timedeltas(),
        decimals,
        st.uuids(),
    )


hashables = st.recursive(
    _scalars(st.decimals(allow_nan=False)),  # a signalling NaN cannot be hashed
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
keys = st.sampled_from([TAG, "v", "", "x"]) | any_text
values = st.recursive(
    _scalars(st.decimals()) | st.binary(max_size=8).map(bytearray),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=3),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=25,
)


# --- exact round-trips ----------------------------------------------------------------


@FUZZ
@given(values)
@example("\ud800 lone \udfff surrogates")
@example(10**5000)
@example(-(10**5000))
@example({10**5000: [float("-inf"), -0.0]})
@example({TAG: "tuple", "v": [1, 2]})
@example([{TAG: None}, {"v": 1, TAG: "set"}])
@example({(1, "a"): {frozenset({b"x"}): None}})
@example(dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59))))
@example(dt.time(23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(seconds=-86399))))
@example([Decimal("sNaN"), Decimal("-0"), Decimal("1E+2"), Decimal("-Infinity")])
def test_json_round_trip_is_exact(value: Any) -> None:
    assert_same(value, round_trip(value))


@FUZZ
@given(values)
def test_encoding_is_deterministic(value: Any) -> None:
    first = dumps(json_ser.encode(value))
    assert dumps(json_ser.encode(round_trip(value))) == first


def test_encoded_form_is_plain_json() -> None:
    encoded = json_ser.encode([1, "a", None, True, 1.5, {"k": [2]}])
    assert dumps(encoded) == b'[1,"a",null,true,1.5,{"k":[2]}]'


def test_tagged_forms_are_documented_shapes() -> None:
    assert json_ser.encode((1, 2)) == {TAG: "tuple", "v": [1, 2]}
    assert json_ser.encode(float("nan")) == {TAG: "float", "v": "nan"}
    assert json_ser.encode(b"\x00\xff") == {TAG: "bytes", "v": "AP8="}
    assert json_ser.encode({1: "a"}) == {TAG: "dict", "v": [[1, "a"]]}
    assert json_ser.encode({TAG: 1}) == {TAG: "dict", "v": [[TAG, 1]]}
    assert json_ser.encode(2**3000) == {TAG: "int", "v": hex(2**3000)}
    assert json_ser.encode(2**1000) == 2**1000  # below the limit: a plain JSON number


def test_user_dict_shaped_like_a_tag_stays_a_dict() -> None:
    value = {TAG: "tuple", "v": [1, 2]}
    back = round_trip(value)
    assert_same(value, back)
    assert type(back) is dict


def test_huge_int_survives_a_lowered_int_max_str_digits() -> None:
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        value = [10**700, -(10**700), {10**700: 1}]
        assert_same(value, round_trip(value))
    finally:
        sys.set_int_max_str_digits(previous)


SET_SCRIPT = """
import sys
from asyncflow._kernel.codec import dumps
from asyncflow._kernel.registry import Registered, field_names, kind_of
from asyncflow.serializers import JSONSerializer
value = [set("abcdefghijklmnop"), frozenset(["x", "yy", b"z", (1, "w")])]
sys.stdout.write(dumps(JSONSerializer().encode(value)).decode())
"""


def test_sets_encode_identically_under_any_hash_seed() -> None:
    """Fingerprints and digests are compared across processes with different hash seeds."""
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", SET_SCRIPT], env=env, capture_output=True, check=True
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs


# --- refusals -------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class FrozenPoint:
    x: int


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


class Kind(str, enum.Enum):
    A = "a"


class Pair(NamedTuple):
    a: int
    b: int


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyList(list):  # type: ignore[type-arg]
    pass


class MyDatetime(dt.datetime):
    pass


class Plain:
    pass


class HostileGetattr:
    """Answers every attribute lookup with an error that is not AttributeError."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")

    def __hash__(self) -> int:
        return 1


def _function() -> None:
    pass


# (value, text the message must contain)
UNSUPPORTED: list[tuple[Any, str]] = [
    (Point(1, 2), "Point"),
    (FrozenPoint(1), "FrozenPoint"),
    (Color.RED, "Color"),
    (Level.LOW, "Level"),
    (Kind.A, "Kind"),
    (Pair(1, 2), "Pair"),
    (collections.OrderedDict(a=1), "OrderedDict"),
    (collections.defaultdict(list, a=[1]), "defaultdict"),
    (collections.Counter("ab"), "Counter"),
    (MyStr("x"), "MyStr"),
    (MyInt(3), "MyInt"),
    (MyFloat(1.5), "MyFloat"),
    (MyList([1]), "MyList"),
    (MyDatetime(2020, 1, 1), "MyDatetime"),
    (Plain(), "Plain"),
    (object(), "object"),
    (HostileGetattr(), "HostileGetattr"),
    (_function, "function"),
    (lambda: None, "function"),
    (len, "builtin_function_or_method"),
    (Plain, "type"),
    (1j, "complex"),
    (range(3), "range"),
    (memoryview(b"x"), "memoryview"),
    (Ellipsis, "ellipsis"),
    (dt.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")), "ZoneInfo"),
    (dt.time(1, tzinfo=zoneinfo.ZoneInfo("UTC")), "ZoneInfo"),
]


@pytest.mark.parametrize(
    ("value", "names"), UNSUPPORTED, ids=[type(v).__name__ for v, _ in UNSUPPORTED]
)
def test_unsupported_type_is_refused_naming_it(value: Any, names: str) -> None:
    with pytest.raises(SerializationError) as caught:
        json_ser.encode(value)
    message = str(caught.value)
    assert names in message
    assert f"{type(value).__module__}.{type(value).__qualname__}" in message


def test_refusal_hints() -> None:
    for registrable in (Point(1, 2), Level.LOW, Pair(1, 2), Color.RED, Kind.A):
        name = type(registrable).__qualname__
        with pytest.raises(SerializationError, match=rf"Config\(types=\[{name}\]\)"):
            json_ser.encode(registrable)
    with pytest.raises(SerializationError, match="would come back as plain dict"):
        json_ser.encode(collections.OrderedDict())
    with pytest.raises(SerializationError, match="would come back as plain str"):
        json_ser.encode(MyStr("x"))
    with pytest.raises(SerializationError, match=r"astimezone\(datetime\.timezone\.utc\)"):
        json_ser.encode(dt.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")))


def test_refusal_names_where_the_value_is() -> None:
    with pytest.raises(SerializationError, match=r"output\['a'\]\[1\]\['b'\] of type"):
        json_ser.encode({"a": [0, {"b": object()}]})
    with pytest.raises(SerializationError, match=r"output\[0\]<item> of type .*Plain"):
        json_ser.encode([{Plain()}])
    with pytest.raises(SerializationError, match=r"output<key> of type .*Plain"):
        json_ser.encode({Plain(): 1})
    # a key whose repr() itself fails (an int beyond int_max_str_digits) still gives a message
    with pytest.raises(SerializationError, match=r"output\[<int>\] of type builtins\.object"):
        json_ser.encode({10**5000: object()})


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2020, 1, 1, fold=1),
        dt.time(1, fold=1),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1), "CET")),
        dt.time(1, tzinfo=dt.timezone(dt.timedelta(hours=-5), "EST")),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(microseconds=1))),
        dt.time(1, tzinfo=dt.timezone(dt.timedelta(microseconds=1))),
    ],
    ids=["fold-datetime", "fold-time", "named-tz", "named-tz-time", "us-offset", "us-offset-time"],
)
def test_datetime_that_iso_text_cannot_carry_is_refused(value: Any) -> None:
    with pytest.raises(SerializationError, match=f"{type(value).__name__}.*would come back as"):
        json_ser.encode(value)


any_offsets = st.timedeltas(
    min_value=dt.timedelta(hours=-23, minutes=-59, seconds=-59, microseconds=-999999),
    max_value=dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
).map(dt.timezone)


@FUZZ
@given(
    st.datetimes(timezones=st.none() | any_offsets) | st.times(timezones=st.none() | any_offsets)
)
def test_any_datetime_round_trips_exactly_or_is_refused(value: Any) -> None:
    """Sub-second offsets and fold=1 included: never a silent change."""
    try:
        encoded = json_ser.encode(value)
    except SerializationError as exc:
        error: SerializationError | None = exc
    else:
        error = None
    if error is not None:
        assert type(value).__name__ in str(error)
        return
    assert_same(value, json_ser.decode(json.loads(dumps(encoded))))


def test_reference_cycle_and_deep_nesting_are_refused() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(SerializationError, match="reference cycle"):
        json_ser.encode(cycle)
    deep: list[Any] = []
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(SerializationError, match="nested too deeply"):
        json_ser.encode(deep)


# --- never written-then-unreadable (issue 12.4) ------------------------------------------

LAYERS = ["list", "tuple", "dict", "tagged_dict", "frozenset", "set_of_tuple", "bytes_leaf"]


def _nest(layers: list[str], leaf: Any) -> Any:
    value = leaf
    for layer in layers:
        if layer == "list":
            value = [value]
        elif layer == "tuple":
            value = (value, 1)
        elif layer == "dict":
            value = {"k": value}
        elif layer == "tagged_dict":
            value = {1: value} if _is_hashable(value) else {2: [value]}
        elif layer == "frozenset" and _is_hashable(value):
            value = frozenset([value])
        elif layer == "set_of_tuple" and _is_hashable(value):
            value = {(value,)}
        else:
            value = [value, b"x"]
    return value


def _at_stack_depth(frames: int, call: Any) -> Any:
    """``call()`` with ``frames`` more Python frames below it (a resume's own stack)."""
    if frames == 0:
        return call()
    return _at_stack_depth(frames - 1, call)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(LAYERS), min_size=MAX_DEPTH // 3, max_size=MAX_DEPTH + 20),
    values,
)
@example(["tuple"] * 400, 1)  # the reported case: written, then refused on every resume
@example(["list"] * (MAX_DEPTH - 1), [1])
@example(["list"] * (MAX_DEPTH - 1), [[1]])
@example(["tuple"] * (MAX_DEPTH // 2), float("nan"))
@example(["tagged_dict"] * (MAX_DEPTH // 3), (1, 2))
def test_every_value_the_encoder_accepts_decodes_back_equal(layers: list[str], leaf: Any) -> None:
    """Deep nesting included: refused when written, or read back equal, from a deep stack."""
    value = _nest(layers, leaf)
    try:
        data = dumps(json_ser.encode(value))
    except SerializationError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert "nested too deeply" in message
        return
    # as resume reads it: inside a record (one more level), parsed, then decoded
    record = b'{"output":' + data + b"}"
    back = _at_stack_depth(300, lambda: json_ser.decode(checkpoint_loads(record)["output"]))
    assert_same(value, back)


def test_depth_limit_accepts_deep_values_and_refuses_deeper() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert round_trip(deep) == deep
    with pytest.raises(SerializationError, match="nested too deeply"):
        json_ser.encode([deep])
    # tuples take two stored levels each ({"__asyncflow__": "tuple", "v": [...]})
    tuples: Any = 1
    for _ in range(MAX_DEPTH // 2):
        tuples = (tuples,)
    assert round_trip(tuples) == tuples
    with pytest.raises(SerializationError, match="nested too deeply"):
        json_ser.encode((tuples,))


unsupported_values = st.sampled_from([v for v, _ in UNSUPPORTED])
wrappers = st.lists(
    st.sampled_from(["list", "tuple", "dict_value", "tagged_dict_value", "dict_key", "set"]),
    max_size=4,
)


def _wrap(bad: Any, how: list[str], sibling: Any) -> Any:
    value = bad
    for layer in how:
        hashable = _is_hashable(value)
        if layer == "list":
            value = [sibling, value]
        elif layer == "tuple":
            value = (value, sibling)
        elif layer == "dict_value":
            value = {"ok": sibling, "bad": value}
        elif layer == "tagged_dict_value":
            value = {1: sibling, TAG: value}
        elif layer == "dict_key" and hashable:
            value = {value: sibling}
        elif layer == "set" and hashable:
            value = frozenset([value, 1])
    return value


def _is_hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@FUZZ
@given(unsupported_values, wrappers, values)
def test_unsupported_values_anywhere_are_refused(bad: Any, how: list[str], sibling: Any) -> None:
    wrapped = _wrap(bad, how, sibling)
    with pytest.raises(SerializationError) as caught:
        json_ser.encode(wrapped)
    assert type(bad).__qualname__ in str(caught.value)


# --- decoding what was not written by encode -----------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {TAG: "nope", "v": 1},
        {TAG: "tuple", "v": [1], "extra": 2},
        {TAG: "tuple"},
        {TAG: "bytes", "v": "not base64!"},
        {TAG: "dict", "v": [[[1], 2]]},  # an unhashable key
        {TAG: "set", "v": [[1]]},
        {TAG: "decimal", "v": "abc"},
        {TAG: "int", "v": "zz"},
        {TAG: "uuid", "v": "x"},
        {TAG: "datetime", "v": 5},
        [{TAG: ["unhashable tag"], "v": 1}],
    ],
)
def test_decoding_a_bad_tag_raises(payload: Any) -> None:
    """decode_record turns any such error into CheckpointCorrupt; here it must just raise."""
    with pytest.raises((ValueError, TypeError, ArithmeticError)):
        json_ser.decode(payload)


# --- pickle --------------------------------------------------------------------------


def test_serializers_satisfy_the_protocol() -> None:
    assert isinstance(json_ser, Serializer)
    assert isinstance(PickleSerializer(), Serializer)
    assert json_ser.name == "json"
    assert PickleSerializer().name == "pickle"


def test_pickle_round_trips_what_json_refuses() -> None:
    ser = PickleSerializer()
    value = [Point(1, 2), Color.RED, Pair(1, 2), collections.OrderedDict(a=1), 1j]
    payload = ser.encode(value)
    assert isinstance(payload, str)
    back = ser.decode(json.loads(dumps(payload)))
    assert back == value
    assert [type(v) for v in back] == [type(v) for v in value]


def test_pickle_refuses_unpicklable_values_naming_the_type() -> None:
    def local() -> None:
        pass

    with pytest.raises(SerializationError, match="cannot pickle output of type"):
        PickleSerializer().encode(local)
    with pytest.raises(SerializationError, match="generator"):
        PickleSerializer().encode(x for x in ())


def test_pickle_protocol_is_used() -> None:
    import base64

    payload = PickleSerializer(protocol=2).encode([1])
    assert base64.b64decode(payload)[:2] == b"\x80\x02"
