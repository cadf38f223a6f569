"""``@action``: turns a function (or a class) into a step with retry and timeout."""

from __future__ import annotations

import functools
import inspect
import math
import types
from collections.abc import Callable
from typing import Any, overload

from asyncflow._core.code_hash import code_hash, comparable
from asyncflow._kernel.errors import ConfigurationError

__all__ = ["Action", "action", "as_action", "step_name"]

_CONTEXT_PARAMS = ("initial_context", "previous_context")


class Action:
    """A step: the wrapped callable plus how to run it.

    ``retry`` is the total number of attempts, as in Dotflow (``0`` and ``1``
    both mean one attempt). ``timeout`` (seconds, ``None`` for none) cancels
    an attempt; ``retry_delay`` is the wait before the next attempt, doubled
    after each one with ``backoff=True`` and capped by ``max_delay``.
    """

    func: Callable[..., Any]

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        retry: int = 1,
        timeout: float | None = None,
        retry_delay: float = 0,
        backoff: bool = False,
        max_delay: float | None = None,
    ) -> None:
        if not callable(func):
            raise ConfigurationError(f"@action needs a function or class, got {func!r}")
        if isinstance(func, Action):  # @action(retry=3) over an @action: the new options win
            func = func.func
        self.func = func
        self.name: str = step_name(func)
        self.module: str = getattr(_unwrap(func), "__module__", "") or ""
        self.retry = _check_int(retry, "retry", self.name)
        self.attempts = max(1, self.retry)
        self.timeout = _check_seconds(timeout, "timeout", self.name, allow_none=True) or None
        self.retry_delay = _check_seconds(retry_delay, "retry_delay", self.name) or 0.0
        self.max_delay = _check_seconds(max_delay, "max_delay", self.name, allow_none=True)
        if not isinstance(backoff, bool):
            raise ConfigurationError(f"@action backoff of {self.name} must be a bool")
        self.backoff = backoff
        self.is_class = isinstance(func, type)
        target = func.__init__ if self.is_class else func
        self.is_async = not self.is_class and _is_async(func)
        self.params = _context_params(target, self.name)
        # Whether the step sees the previous output: only then is its input
        # digest compared on resume, so a step that takes none may move.
        self.receives_previous = "previous_context" in self.params or (
            self.is_class and any("previous_context" in m.params for m in self.methods())
        )
        self._code_hash: str | None = None
        # updated=(): copying func.__dict__ (a class's attributes, or an inner
        # Action's settings) would overwrite this Action's own attributes.
        functools.update_wrapper(self, func, updated=())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the step directly, outside any flow (handy in unit tests)."""
        return self.func(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self.func, instance)

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        delay = self.retry_delay
        if self.backoff:
            delay *= 2.0 ** min(attempt - 1, 64)
        return delay if self.max_delay is None else min(delay, self.max_delay)

    def delays(self) -> list[float]:
        """The waits between attempts: ``attempts - 1`` of them."""
        return [self.delay(n) for n in range(1, self.attempts)]

    @property
    def code_hash(self) -> str:
        """A hash of the step's source, so a record says which code produced it.

        ``scheme:hex`` (see ``code_hash.code_hash``): computed once per step,
        from its module's source read once, in microseconds.
        """
        if self._code_hash is None:
            self._code_hash = code_hash(_unwrap(self.func), self.name)
        return self._code_hash

    def code_unchanged(self, recorded: str) -> bool:
        """Whether a record's code hash shows no change: equal, or of another scheme.

        A hash made by another scheme (an older asyncflow, or bytecode on
        another Python) says nothing either way: not a change to report.
        """
        current = self.code_hash
        return recorded == current or not comparable(recorded, current)

    def methods(self) -> list[Action]:
        """For a class step: its ``@action`` methods in definition order, bases first."""
        if not self.is_class:
            return []
        found: dict[str, Action] = {}
        for klass in reversed(self.func.__mro__):  # type: ignore[attr-defined]
            for attr, value in vars(klass).items():
                if isinstance(value, Action):
                    found[attr] = value
                else:  # overridden by a plain attribute: no longer a step
                    found.pop(attr, None)
        return list(found.values())

    def __repr__(self) -> str:
        return f"<action {self.name}>"


@overload
def action(func: Callable[..., Any], /) -> Action: ...


@overload
def action(
    *,
    retry: int = 1,
    timeout: float | None = None,
    retry_delay: float = 0,
    backoff: bool = False,
    max_delay: float | None = None,
) -> Callable[[Callable[..., Any]], Action]: ...


def action(
    func: Callable[..., Any] | None = None,
    /,
    *,
    retry: int = 1,
    timeout: float | None = None,
    retry_delay: float = 0,
    backoff: bool = False,
    max_delay: float | None = None,
) -> Action | Callable[[Callable[..., Any]], Action]:
    """Mark a function, coroutine function or class as a workflow step.

    Usable bare (``@action``) or with options (``@action(retry=3, timeout=10)``).
    """
    options: dict[str, Any] = {
        "retry": retry,
        "timeout": timeout,
        "retry_delay": retry_delay,
        "backoff": backoff,
        "max_delay": max_delay,
    }
    if func is not None:
        return Action(func, **options)

    def decorate(inner: Callable[..., Any]) -> Action:
        return Action(inner, **options)

    return decorate


def as_action(step: object) -> Action:
    """The ``Action`` for what ``task.add`` was given: plain callables are wrapped."""
    if isinstance(step, Action):
        return step
    if callable(step):
        return Action(step)
    raise ConfigurationError(
        f"step must be a function, coroutine function or class decorated with @action,"
        f" got {type(step).__name__}: {step!r}"
    )


def _unwrap(func: Any) -> Any:
    """What a step's name and code come from: a partial's function, a callable object's class."""
    while isinstance(func, functools.partial):
        func = func.func
    if isinstance(func, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return func
    if hasattr(func, "__qualname__") and hasattr(func, "__code__"):
        return func  # a function-like object (a Cython or compiled function)
    return type(func)


def step_name(func: Any) -> str:
    """The qualified name a step is known by, the same in every process.

    A ``functools.partial`` is named after the function it wraps and a
    callable object after its class: their ``repr`` holds a memory address,
    which would make every checkpoint of theirs a mismatch in a new process.
    """
    target = _unwrap(func)
    if isinstance(target, types.MethodType):
        target = target.__func__
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    return name if isinstance(name, str) and name else type(target).__qualname__


def _is_async(func: Callable[..., Any]) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004
    )


def _context_params(func: Callable[..., Any], name: str) -> frozenset[str]:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(p for p in signature.parameters if p in _CONTEXT_PARAMS)


def _check_int(value: object, what: str, name: str) -> int:
    if type(value) is not int or value < 0:
        raise ConfigurationError(f"@action {what} of {name} must be an int >= 0, got {value!r}")
    return value


def _check_seconds(
    value: object, what: str, name: str, *, allow_none: bool = False
) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"@action {what} of {name} must be a number of seconds, got {value!r}"
        )
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"@action {what} of {name} must be finite and >= 0, got {value!r}")
    return float(value)
