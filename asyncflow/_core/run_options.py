"""What one ``start()`` asks for, checked in full before anything runs or is written.

A bad argument must fail fast, naming itself, before a lease is taken or a
checkpoint cleared; ``start()`` and a worker's resume of a parked run share
the record and its checks so that they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asyncflow._core.graph import check_graph
from asyncflow._core.modes import MODES
from asyncflow._core.runner import CODE_CHANGE_POLICIES
from asyncflow._core.task import Task
from asyncflow._kernel.errors import ConfigurationError
from asyncflow._kernel.shape import close_matches

__all__ = ["RunOptions", "check_options", "infer_mode"]

_POLICIES = ("reuse", "reset", "raise")
_ON_WAIT = ("block", "park")


def infer_mode(tasks: Sequence[Task]) -> str:
    """The mode of a ``start()`` that names none: ``graph`` for a flow with a graph."""
    return "graph" if any(t.depends_on or t.kind == "map" for t in tasks) else "sequential"


@dataclass(frozen=True, slots=True)
class RunOptions:
    """``start()``'s arguments; each default is ``start()``'s own."""

    mode: str
    resume: bool
    keep_going: bool = False
    on_success: Callable[..., Any] | None = None
    on_failure: Callable[..., Any] | None = None
    on_input_change: str = "reuse"
    fingerprint: str | None = None
    max_concurrency: int | None = None
    raise_on_failure: bool = False
    wait_for_lease: bool | float = False
    on_wait: str = "block"
    only_if_waiting: bool = False  # a worker's resume: do nothing unless run.json says waiting
    rerun_from: str | None = None
    on_code_change: str = "reuse"


def check_options(
    options: RunOptions,
    *,
    workflow_id: str,
    fixed_id: bool,
    tasks: Sequence[Task],
    running: bool,
) -> None:
    """Raise ``ConfigurationError`` for the first argument at fault, in ``start()``'s order."""
    if options.rerun_from is not None and not options.resume:
        raise ConfigurationError("rerun_from needs resume=True (a fresh run re-runs everything)")
    if options.on_code_change not in CODE_CHANGE_POLICIES:
        raise ConfigurationError(
            f"on_code_change must be one of {', '.join(CODE_CHANGE_POLICIES)},"
            f" got {options.on_code_change!r}"
        )
    mode, on_input_change = options.mode, options.on_input_change
    on_success, on_failure = options.on_success, options.on_failure
    fingerprint, max_concurrency = options.fingerprint, options.max_concurrency
    wait_for_lease = options.wait_for_lease
    if running:
        raise ConfigurationError(
            f"workflow {workflow_id} is already running on this object; await flow.wait() first"
        )
    if mode not in MODES:
        raise ConfigurationError(
            f"mode must be one of {', '.join(MODES)}, got {mode!r}"
            f"{close_matches(str(mode), list(MODES))}"
        )
    check_graph(tasks, mode)
    if on_input_change not in _POLICIES:
        raise ConfigurationError(
            f"on_input_change must be one of {', '.join(_POLICIES)}, got {on_input_change!r}"
        )
    for name, value in (("on_success", on_success), ("on_failure", on_failure)):
        if value is not None and not callable(value):
            raise ConfigurationError(f"{name} must be callable, got {value!r}")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise ConfigurationError(f"fingerprint must be a str, got {fingerprint!r}")
    if max_concurrency is not None and (type(max_concurrency) is not int or max_concurrency < 1):
        raise ConfigurationError(
            f"max_concurrency must be an int >= 1 or None, got {max_concurrency!r}"
        )
    if (
        wait_for_lease is not True
        and wait_for_lease is not False
        and (
            isinstance(wait_for_lease, bool)
            or not isinstance(wait_for_lease, (int, float))
            or wait_for_lease < 0
        )
    ):
        raise ConfigurationError(
            f"wait_for_lease must be a bool or seconds >= 0, got {wait_for_lease!r}"
        )
    if options.resume and not fixed_id:
        raise ConfigurationError(
            "resume=True needs a fixed workflow id: AsyncFlow(workflow_id='...'),"
            " so that a later run can find this run's checkpoints"
        )
    if options.on_wait not in _ON_WAIT:
        raise ConfigurationError(f"on_wait must be 'block' or 'park', got {options.on_wait!r}")
