"""Workflow ids, task keys and storage keys: hostile ones are refused, never normalised."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncflow import ConfigurationError
from asyncflow._kernel.ids import MAX_ID_LENGTH, validate_id, validate_storage_key

FUZZ = settings(max_examples=300, deadline=None)

#: The documented alphabet, written out independently of the implementation.
SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", re.ASCII)

HOSTILE_IDS: list[tuple[Any, str]] = [
    ("", "must not be empty"),
    (".", "is not allowed"),
    ("..", "is not allowed"),
    ("../x", "is not allowed"),
    ("../../etc/passwd", "is not allowed"),
    ("/etc", "is not allowed"),
    ("/", "is not allowed"),
    ("a/b", "is not allowed"),
    ("a\\b", "is not allowed"),
    ("..\\..\\windows", "is not allowed"),
    ("C:\\x", "is not allowed"),
    ("C:", "is not allowed"),
    (".hidden", "is not allowed"),
    ("-rf", "is not allowed"),
    ("a\x00b", "is not allowed"),
    ("a\nb", "is not allowed"),
    ("abc\n", "is not allowed"),
    ("a\tb", "is not allowed"),
    ("a\rb", "is not allowed"),
    ("\x1b[31mred", "is not allowed"),
    ("a b", "is not allowed"),
    (" a", "is not allowed"),
    ("a\x7f", "is not allowed"),
    ("caf\u00e9", "is not allowed"),  # é
    ("\uff41\uff42", "is not allowed"),  # fullwidth "ab": NFKC-normalises to "ab"
    ("\uff0e\uff0e", "is not allowed"),  # two fullwidth full stops: NFKC gives ".."
    ("a\u2215b", "is not allowed"),  # division slash, looks like "/"
    ("a\u202eb", "is not allowed"),  # right-to-left override
    ("a\u200bb", "is not allowed"),  # zero-width space
    ("\u0430dmin", "is not allowed"),  # starts with a Cyrillic a
    ("\u0661", "is not allowed"),  # Arabic-Indic digit one: \d would accept it
    ("x\ud800", "is not allowed"),  # lone surrogate
    ("a*", "is not allowed"),
    ("a?", "is not allowed"),
    ("a:b", "is not allowed"),
    ("%2e%2e", "is not allowed"),
    ("x" * (MAX_ID_LENGTH + 1), "the limit is 128"),
    ("x" * 100_000, "the limit is 128"),
]


@pytest.mark.parametrize(
    ("value", "reason"), HOSTILE_IDS, ids=[repr(v)[:30] for v, _ in HOSTILE_IDS]
)
def test_hostile_ids_are_refused_naming_the_thing(value: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validate_id(value, "workflow_id")
    message = str(caught.value)
    assert message.startswith("workflow_id ")
    assert reason in message
    assert len(message) < 400  # a huge id is not echoed in full


@pytest.mark.parametrize(
    "value",
    [None, 1, 1.5, b"wf", bytearray(b"wf"), ["wf"], ("wf",), {"wf": 1}, object(), True],
    ids=lambda v: type(v).__name__,
)
def test_non_str_ids_are_refused_naming_the_type(value: Any) -> None:
    with pytest.raises(
        ConfigurationError, match=f"task key must be a str, got {type(value).__name__}"
    ):
        validate_id(value, "task key")


def test_non_str_id_with_a_broken_or_huge_repr_still_gets_a_clear_error() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(ConfigurationError, match="must be a str, got Broken"):
        validate_id(Broken(), "workflow_id")
    with pytest.raises(ConfigurationError, match="must be a str, got bytes") as caught:
        validate_id(b"x" * 1_000_000, "workflow_id")
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "value",
    ["a", "A", "0", "_", "my-etl-pipeline", "etl.v2", "a..b", "x" * MAX_ID_LENGTH, "load_2024"],
)
def test_ordinary_ids_are_accepted_unchanged(value: str) -> None:
    assert validate_id(value, "workflow_id") is value


def test_config_error_is_a_value_error_and_an_asyncflow_error() -> None:
    from asyncflow import AsyncflowError

    with pytest.raises(ValueError):
        validate_id("../x", "workflow_id")
    with pytest.raises(AsyncflowError):
        validate_id("../x", "workflow_id")


@FUZZ
@given(st.text(st.characters(exclude_categories=()), max_size=140) | st.from_regex(SAFE_SEGMENT))
def test_any_text_is_refused_or_a_safe_single_segment(value: str) -> None:
    try:
        result = validate_id(value, "key")
    except ConfigurationError as exc:
        error: ConfigurationError | None = exc
    else:
        error = None
    if error is not None:
        assert str(error).startswith("key ")
        return
    assert result == value
    assert SAFE_SEGMENT.fullmatch(value)
    assert value.isascii()
    assert "/" not in value
    assert "\\" not in value
    assert value not in (".", "..")
    assert not value.startswith((".", "-"))
    assert 1 <= len(value) <= MAX_ID_LENGTH


@FUZZ
@given(st.from_regex(SAFE_SEGMENT, fullmatch=True).filter(lambda s: len(s) <= MAX_ID_LENGTH))
def test_every_id_of_the_documented_alphabet_is_accepted(value: str) -> None:
    assert validate_id(value, "workflow_id") == value


# --- storage keys ---------------------------------------------------------------------

HOSTILE_KEYS = [
    "",
    "/",
    "/etc/passwd",
    "wf/../../etc/passwd",
    "../wf/run.json",
    "wf/./run.json",
    "wf/..",
    "wf//run.json",
    "wf/run.json/",
    "wf\\..\\run.json",
    "wf/tasks/\x00.json",
    "wf/tasks/a\nb.json",
    "wf/.lease.json",
    "wf/\uff0e\uff0e/x",
    "wf/a\u202e/x",
    "C:/x",
    "x" * 1025,
]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=[repr(k)[:30] for k in HOSTILE_KEYS])
def test_hostile_storage_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigurationError, match="storage key") as caught:
        validate_storage_key(key)
    assert len(str(caught.value)) < 400


def test_unsafe_segment_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"unsafe segment '\.\.'"):
        validate_storage_key("wf/../x")


@pytest.mark.parametrize("key", [None, 1, b"wf/run.json", ["wf"], object()])
def test_non_str_storage_keys_are_refused(key: Any) -> None:
    with pytest.raises(
        ConfigurationError, match=f"storage key must be a str, got {type(key).__name__}"
    ):
        validate_storage_key(key)


@pytest.mark.parametrize(
    "key", ["wf/run.json", "wf/lease.json", "wf/tasks/0.json", "wf/tasks/load.json", "a", "a/b/c"]
)
def test_layout_keys_are_accepted(key: str) -> None:
    assert validate_storage_key(key) is key


@FUZZ
@given(
    st.text(st.characters(exclude_categories=()), max_size=60)
    | st.lists(
        st.sampled_from(["..", ".", "", "wf", "tasks", "0.json", "\\", "a\x00", "é"]), max_size=5
    ).map("/".join)
)
def test_any_storage_key_is_refused_or_relative_safe_segments(key: str) -> None:
    try:
        result = validate_storage_key(key)
    except ConfigurationError as exc:
        error: ConfigurationError | None = exc
    else:
        error = None
    if error is not None:
        assert "storage key" in str(error)
        return
    assert result == key
    assert not key.startswith("/")
    for segment in key.split("/"):
        assert SAFE_SEGMENT.fullmatch(segment), segment
        assert segment not in (".", "..")
