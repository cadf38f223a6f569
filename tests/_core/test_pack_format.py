"""The pack's bytes: what decodes, what is corrupt, what is left unused."""

from __future__ import annotations

import hashlib

import pytest

from asyncflow import CheckpointCorrupt
from asyncflow._kernel.pack import decode_pack, encode_pack

ENTRIES = [("a", "t1", b'{"x":1}'), ("b", "t2", b""), ("c", "t3", b"\n\x00binary")]


def test_a_pack_round_trips_its_entries_exactly() -> None:
    data = encode_pack("wf", "run-1", "completed", ENTRIES, None)
    pack = decode_pack(data, "wf/pack/tasks.pack", "wf", None)
    assert pack is not None
    assert pack.entries == {key: (token, body) for key, token, body in ENTRIES}
    assert (pack.run_id, pack.status) == ("run-1", "completed")


def test_a_signed_pack_needs_its_key_and_a_reader_may_skip_the_signature() -> None:
    key = b"k" * 32
    data = encode_pack("wf", None, "waiting", ENTRIES, key)
    assert decode_pack(data, "p", "wf", key) is not None
    with pytest.raises(CheckpointCorrupt, match="configure Config"):
        decode_pack(data, "p", "wf", None)
    assert decode_pack(data, "p", "wf", None, check_signature=False) is not None


def _reheaded(body: bytes, fmt: bytes = b"1") -> bytes:
    digest = hashlib.sha256(body).hexdigest().encode()
    return b"asyncflow-pack " + fmt + b" sha256=" + digest + b"\n" + body


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"workflow_id":"wf","entries":[["a","t",5]]}\nabc', "end at byte"),
        (b'{"workflow_id":"wf","entries":[["a","t",1],["a","t",1]]}\nab', "packed twice"),
        (b'{"workflow_id":"wf","entries":[["a",1,0]]}\n', "not \\[key, token, length\\]"),
        (b'{"workflow_id":"other","status":"completed","entries":[]}\n', "workflow 'other'"),
        (b"not json\n", "header is malformed"),
    ],
)
def test_a_malformed_pack_with_a_good_digest_is_corrupt(body: bytes, why: str) -> None:
    with pytest.raises(CheckpointCorrupt, match=why):
        decode_pack(_reheaded(body), "wf/pack/tasks.pack", "wf", None)


def test_a_pack_of_a_newer_format_is_left_unused() -> None:
    assert decode_pack(_reheaded(b"whatever", b"2"), "p", "wf", None) is None


@pytest.mark.parametrize("data", [b"", b"garbage", b"asyncflow-pack 1 sha256=00\n{}"])
def test_anything_else_is_corrupt_naming_the_pack(data: bytes) -> None:
    with pytest.raises(CheckpointCorrupt, match=r"pack wf/pack/tasks\.pack") as caught:
        decode_pack(data, "wf/pack/tasks.pack", "wf", None)
    assert caught.value.key == "wf/pack/tasks.pack"
