"""The fast encoding of small outputs is exactly the strict walk, and memory is as strict as files.

``encode_output`` formats a plain JSON scalar directly instead of walking it;
``StorageDefault`` commits without a second key check. Neither may accept,
change or refuse anything differently: these tests compare the fast path
with the strict walk (forced by a ``JSONSerializer`` subclass, which never
takes it) value by value, and a run on memory with the same run on files.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from asyncflow import AsyncFlow, Config, SerializationError, action
from asyncflow._core.task import TaskStatus
from asyncflow._kernel.checkpoint import _LONG_TEXT, EncodedOutput, _long_text, encode_output
from asyncflow._kernel.serializers import TAG, JSONSerializer
from asyncflow.providers import StorageDefault, StorageFile
from tests.test_serializers import FUZZ, assert_same, values


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


class Name(str):
    pass


class Count(int):
    pass


class Ratio(float):
    pass


class Items(list):  # type: ignore[type-arg]
    pass


class Mapping(dict):  # type: ignore[type-arg]
    pass


class _Walk(JSONSerializer):
    """The same serializer; being a subclass, ``encode_output`` never takes its fast path."""


TYPES = [Point, Color]
FAST = JSONSerializer(TYPES)
WALK = _Walk(TYPES)

subclassed = st.one_of(
    st.text(max_size=4).map(Name),
    st.integers().map(Count),
    st.floats().map(Ratio),
    st.just(Level.LOW),
    st.lists(st.integers(), max_size=3).map(Items),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3).map(Mapping),
    st.just(OrderedDict(a=1)),
)
registered = st.one_of(
    st.builds(Point, st.integers(), st.floats()),
    st.just(Color.RED),
)
tricky = st.one_of(
    st.sampled_from(
        [
            True,
            False,
            1,
            0,
            -0.0,
            0.0,
            math.nan,
            math.inf,
            -math.inf,
            2**2000,
            2**2000 - 1,
            2**2001,
            -(2**2000),
            10**5000,
            "\ud800",
            "\udfff x \ud800",
            TAG,
            "",
            None,
            (),
            (1,),
            {1: "a"},
            {True: 1},
            {None: 1},
            {TAG: 1},
            [1, True, 1.0],
            {1, 2},
            frozenset(),
            b"x",
        ]
    ),
    subclassed,
    registered,
    values,
)


def _outcome(serializer: JSONSerializer, value: Any, limit: int | None) -> EncodedOutput | str:
    try:
        return encode_output(serializer, value, "step", limit)
    except SerializationError as exc:
        return f"SerializationError: {exc}"


@FUZZ
@given(tricky, st.sampled_from([None, 1, 4, 10_000]))
@example(Name("x"), None)
@example(Count(1), None)
@example(Level.LOW, None)
@example(Ratio(0.5), None)
@example(2**2000, None)
@example(2**2001, None)
@example(math.nan, None)
@example(-0.0, None)
@example("\ud800", None)
@example(True, 3)
@example("abcd", 5)
@example("x" * 5000, None)
@example("x" * 5000 + '"', None)
@example("x" * 5000 + "\x7f", None)
@example("\ud800" + "x" * 5000, None)
@example("x" * 5000, 5001)
@example("x" * 5000, 5002)
def test_fast_encoding_is_the_strict_walk_byte_for_byte(value: Any, limit: int | None) -> None:
    """Same bytes and digest, or the same ``SerializationError`` message."""
    assert _outcome(FAST, value, limit) == _outcome(WALK, value, limit)


@FUZZ
@given(
    st.text(st.characters(max_codepoint=0x80), min_size=1, max_size=40),
    st.integers(0, 8),
)
def test_a_long_string_is_escaped_as_json_escapes_it(piece: str, copies: int) -> None:
    """The long-text path (nothing to escape: the bytes between quotes) is ``json.dumps``."""
    value = "p" * _LONG_TEXT + piece * copies
    assert _long_text(value) == json.dumps(value).encode()
    assert _outcome(FAST, value, None) == _outcome(WALK, value, None)


def test_the_scalar_fast_path_is_what_small_outputs_take() -> None:
    """Guard for the comparison above: the two serializers do take different paths."""
    calls = []

    class Counting(_Walk):
        def encode(self, value: Any) -> Any:
            calls.append(value)
            return super().encode(value)

    encode_output(Counting(), 1, "step")
    assert calls == [1]  # a subclass walks
    counted = JSONSerializer()
    counted.encode = Counting().encode  # type: ignore[method-assign]
    encode_output(counted, 2, "step")
    assert calls == [1]  # the exact class formats a plain int without walking it
    with pytest.raises(SerializationError, match="subclasses of built-in types"):
        encode_output(counted, Count(3), "step")
    assert calls == [1, Count(3)]  # but never a subclass: it is walked, and refused


OUTPUTS = [
    1,
    True,
    -0.0,
    2**2001,
    math.nan,
    "\ud800",
    (1, 2),
    {1: "a"},
    {TAG: "tuple", "v": [1]},
    {1, 2},
    Point(1, 2.5),
    Color.RED,
    Name("x"),
    Count(1),
    Level.LOW,
    OrderedDict(a=1),
    object(),
    [Mapping(a=1)],
]


def _flow(storage: Any, output: Any) -> AsyncFlow:
    @action
    async def emit() -> Any:
        return output

    flow = AsyncFlow(config=Config(storage=storage, types=TYPES), workflow_id="strict")
    flow.task.add(emit, key="emit")
    return flow


@pytest.mark.anyio
@pytest.mark.parametrize("output", OUTPUTS, ids=lambda v: type(v).__name__)
async def test_memory_is_exactly_as_strict_as_files(output: Any, tmp_path: Path) -> None:
    """The same refusal (type and message) on both, or the same exact value after a resume."""
    seen = []
    for storage in (StorageDefault(), StorageFile(tmp_path)):
        flow = await _flow(storage, output).start()
        task = flow.task.queue[0]
        if task.status is TaskStatus.FAILED:
            assert isinstance(task.error, SerializationError)
            seen.append(("refused", str(task.error)))
            continue
        resumed = await _flow(storage, None).start(resume=True)
        again = resumed.task.queue[0]
        assert again.restored
        assert_same(again.current_context.storage, output)
        seen.append(("stored", task.digest))
    assert seen[0] == seen[1]
