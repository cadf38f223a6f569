"""The public API: every public module's ``__all__`` resolves, and names its classes and
functions after a public module (as trio and httpx check theirs)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import asyncflow
from asyncflow._kernel.public import is_private
from asyncflow._kernel.summary import ErrorInfo, RunSummary

PUBLIC = sorted(
    info.name
    for info in pkgutil.walk_packages(asyncflow.__path__, "asyncflow.")
    if not is_private(info.name)
    and not info.name.startswith(("asyncflow.executors.dask", "asyncflow.__main__"))
)


def test_the_public_modules_are_found() -> None:
    assert {"asyncflow.reading", "asyncflow.providers", "asyncflow.events"} <= set(PUBLIC)


@pytest.mark.parametrize("name", ["asyncflow", *PUBLIC])
def test_every_name_in_all_exists_and_is_named_after_a_public_module(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return  # a module with nothing to export (cli commands, ui internals)
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    for attr in exported:
        obj = getattr(module, attr)  # raises if __all__ names something missing
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert not is_private(obj.__module__), f"{name}.{attr} is {obj.__module__}.{attr}"


def test_the_core_names_are_asyncflow_s() -> None:
    for obj in (asyncflow.AsyncFlow, asyncflow.Config, asyncflow.Context, asyncflow.Worker):
        assert obj.__module__ == "asyncflow"
    errors = [
        obj
        for obj in vars(asyncflow).values()
        if inspect.isclass(obj) and issubclass(obj, asyncflow.AsyncflowError)
    ]
    assert len(errors) >= 14
    assert {error.__module__ for error in errors} == {"asyncflow"}


def test_run_summaries_name_errors_by_their_public_name() -> None:
    with pytest.raises(asyncflow.TaskTimeout) as caught:
        raise asyncflow.TaskTimeout("slow")
    assert ErrorInfo.of(caught.value).type == "asyncflow.TaskTimeout"


def test_summaries_written_with_the_old_private_names_read_with_the_public_ones() -> None:
    old = (
        b'{"asyncflow": 1, "kind": "run", "workflow_id": "wf", "run_id": "r1",'
        b' "status": "failed", "mode": "sequential", "started_at": 1.0,'
        b' "tasks": [{"key": "a", "step": "a", "outcome": "failed", "attempts": 1,'
        b' "error": {"type": "asyncflow._kernel.errors.TaskTimeout", "message": "m",'
        b' "traceback": ""}}]}'
    )
    summary = RunSummary.decode(old, "wf/runs/r1.json")
    error = summary.tasks[0].error
    assert error is not None
    assert error.type == "asyncflow.TaskTimeout"
