"""Loading ``FILE.py[:ATTR]``: the flow a command runs, and rebuilding it elsewhere."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from asyncflow import AsyncFlow
from asyncflow.cli._common import EXIT_USAGE, CliError, describe
from asyncflow.providers import Storage
from asyncflow.reading import close_matches

__all__ = ["check_flow", "find_target", "load_module", "rebuild", "split_target"]


def split_target(target: str) -> tuple[Path, str | None]:
    """``FILE.py[:ATTR]``; a colon belongs to the path unless what follows is a name."""
    path, sep, attr = target.rpartition(":")
    if sep and path and all(part.isidentifier() for part in attr.split(".")):
        return Path(path), attr
    return Path(target), None


def load_module(path: Path) -> ModuleType:
    """Import ``path`` under its stem (not ``__main__``), with its folder on ``sys.path``."""
    if not path.is_file():
        raise CliError(f"no such file: {path}", EXIT_USAGE)
    name = path.stem if path.stem.isidentifier() else "asyncflow_cli_target"
    if name in sys.modules:
        name = f"asyncflow_cli_{name}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot import {path}: not a Python file", EXIT_USAGE)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise CliError(f"importing {path} failed: {describe(exc)}", EXIT_USAGE) from exc
    return module


def find_target(module: ModuleType, path: Path, attr: str | None) -> object:
    """ATTR, else the module's only ``AsyncFlow``, else its ``main``."""
    if attr is not None:
        value: object = module
        for part in attr.split("."):
            if not hasattr(value, part):
                names = [n for n in dir(value) if not n.startswith("_")]
                hint = close_matches(part, names)
                raise CliError(f"{path} has no attribute {attr!r}{hint}", EXIT_USAGE)
            value = getattr(value, part)
        return value
    flows = [name for name, value in vars(module).items() if isinstance(value, AsyncFlow)]
    if len(flows) == 1:
        return getattr(module, flows[0])
    if len(flows) > 1:
        raise CliError(
            f"{path} defines several flows ({', '.join(flows)}); name one: {path}:{flows[0]}",
            EXIT_USAGE,
        )
    if callable(getattr(module, "main", None)):
        return module.main
    raise CliError(
        f"{path} defines no AsyncFlow and no main(); name a flow or a function returning one:"
        f" {path}:ATTR",
        EXIT_USAGE,
    )


def check_flow(value: object, what: str) -> AsyncFlow:
    if not isinstance(value, AsyncFlow):
        raise CliError(f"{what} is not an AsyncFlow (got {type(value).__name__})", EXIT_USAGE)
    return value


def rebuild(flow: AsyncFlow, storage: Storage | None, workflow_id: str | None) -> AsyncFlow:
    """The same tasks in a new ``AsyncFlow`` with another storage and/or workflow id."""
    config = dataclasses.replace(flow.config, storage=storage) if storage else flow.config
    if workflow_id is None and flow.fixed_id:
        workflow_id = flow.workflow_id
    new = AsyncFlow(config=config, workflow_id=workflow_id)
    new.task.copy_from(flow.task)  # keys, dependencies, maps and child flows
    return new
