"""``make_context``: the engine's fast ``Context`` constructor builds the very same object."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from asyncflow._core.context import Context, make_context


def test_make_context_is_context_with_every_field() -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    fast = make_context([1], 3, "wf", "k", when)
    slow = Context(storage=[1], task_id=3, workflow_id="wf", key="k", time=when)
    assert type(fast) is Context
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert {f.name: getattr(fast, f.name) for f in dataclasses.fields(Context)} == {
        "storage": [1],
        "task_id": 3,
        "workflow_id": "wf",
        "key": "k",
        "time": when,
    }
    assert dataclasses.replace(fast, key="other").key == "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.storage = 2  # type: ignore[misc]
