"""``@action``: options, validation, retry delays, context detection, class steps."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import pytest

from asyncflow import Action, ConfigurationError, Context, action
from asyncflow._core.action import as_action

# --- decorating -----------------------------------------------------------------------


def test_bare_decorator_keeps_defaults() -> None:
    @action
    def step() -> int:
        return 1

    assert isinstance(step, Action)
    assert (step.retry, step.attempts, step.timeout) == (1, 1, None)
    assert (step.retry_delay, step.backoff, step.max_delay) == (0.0, False, None)
    assert step.name == "test_bare_decorator_keeps_defaults.<locals>.step"
    assert step.module == __name__
    assert step.__name__ == "step"
    assert step.__wrapped__ is step.func
    assert step.is_async is False
    assert step.is_class is False
    assert repr(step) == "<action test_bare_decorator_keeps_defaults.<locals>.step>"


def test_decorator_with_options() -> None:
    @action(retry=3, timeout=10, retry_delay=0.5, backoff=True, max_delay=2)
    async def step() -> int:
        return 1

    assert (step.retry, step.attempts, step.timeout) == (3, 3, 10.0)
    assert (step.retry_delay, step.backoff, step.max_delay) == (0.5, True, 2.0)
    assert isinstance(step.timeout, float)
    assert step.is_async is True


def test_empty_parentheses_work_like_bare() -> None:
    @action()
    def step() -> int:
        return 1

    assert isinstance(step, Action)
    assert step.attempts == 1


@pytest.mark.parametrize(("retry", "attempts"), [(0, 1), (1, 1), (2, 2), (5, 5)])
def test_retry_is_the_total_number_of_attempts(retry: int, attempts: int) -> None:
    step = action(retry=retry)(lambda: None)
    assert step.retry == retry
    assert step.attempts == attempts
    assert len(step.delays()) == attempts - 1


def test_timeout_zero_means_no_timeout() -> None:
    """Documented here because it is easy to miss: 0 disables the timeout, as in Dotflow."""
    assert action(timeout=0)(lambda: None).timeout is None
    assert action(timeout=0.25)(lambda: None).timeout == 0.25


# --- validation -----------------------------------------------------------------------


def named_step() -> None:
    pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry": -1}, "retry of named_step must be an int >= 0, got -1"),
        ({"retry": True}, "retry of named_step must be an int >= 0, got True"),
        ({"retry": 2.0}, "retry of named_step must be an int >= 0, got 2.0"),
        ({"retry": "3"}, "retry of named_step must be an int >= 0, got '3'"),
        ({"retry": None}, "retry of named_step must be an int >= 0, got None"),
        ({"timeout": float("nan")}, "timeout of named_step must be finite and >= 0, got nan"),
        ({"timeout": float("inf")}, "timeout of named_step must be finite and >= 0, got inf"),
        ({"timeout": -1}, "timeout of named_step must be finite and >= 0, got -1"),
        ({"timeout": True}, "timeout of named_step must be a number of seconds, got True"),
        ({"timeout": "10"}, "timeout of named_step must be a number of seconds, got '10'"),
        ({"retry_delay": -0.5}, "retry_delay of named_step must be finite and >= 0"),
        ({"retry_delay": None}, "retry_delay of named_step must be a number of seconds"),
        ({"retry_delay": float("nan")}, "retry_delay of named_step must be finite"),
        ({"max_delay": -1}, "max_delay of named_step must be finite and >= 0"),
        ({"max_delay": "1"}, "max_delay of named_step must be a number of seconds"),
        ({"backoff": 1}, "backoff of named_step must be a bool"),
        ({"backoff": "yes"}, "backoff of named_step must be a bool"),
        ({"backoff": None}, "backoff of named_step must be a bool"),
    ],
)
def test_bad_options_raise_configuration_error_naming_the_step(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        action(**options)(named_step)
    assert message in str(caught.value)
    assert str(caught.value).startswith("@action ")


def test_action_of_a_non_callable_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="@action needs a function or class, got 42"):
        Action(42)  # type: ignore[arg-type]


# --- delays ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "delays"),
    [
        ({"retry": 1, "retry_delay": 5}, []),
        ({"retry": 4}, [0.0, 0.0, 0.0]),
        ({"retry": 4, "retry_delay": 0.5}, [0.5, 0.5, 0.5]),
        ({"retry": 5, "retry_delay": 0.5, "backoff": True}, [0.5, 1.0, 2.0, 4.0]),
        ({"retry": 5, "retry_delay": 0.5, "backoff": True, "max_delay": 1.5}, [0.5, 1.0, 1.5, 1.5]),
        ({"retry": 3, "retry_delay": 2, "max_delay": 1}, [1.0, 1.0]),
        ({"retry": 3, "retry_delay": 0, "backoff": True}, [0.0, 0.0]),
        ({"retry": 3, "retry_delay": 1, "backoff": True, "max_delay": 0}, [0.0, 0.0]),
    ],
)
def test_delays(options: dict[str, Any], delays: list[float]) -> None:
    assert action(**options)(named_step).delays() == delays


# --- contexts -------------------------------------------------------------------------


def test_context_params_are_detected_by_name_only() -> None:
    def none() -> None: ...
    def previous(previous_context: Context) -> None: ...
    def initial(initial_context: Context) -> None: ...
    def both(initial_context: Context, previous_context: Context) -> None: ...
    def keyword_only(*, previous_context: Context) -> None: ...
    def other_names(context: Context, previous: Context) -> None: ...
    def var_kwargs(**kwargs: Any) -> None: ...

    assert action(none).params == frozenset()
    assert action(previous).params == {"previous_context"}
    assert action(initial).params == {"initial_context"}
    assert action(both).params == {"initial_context", "previous_context"}
    assert action(keyword_only).params == {"previous_context"}
    assert action(other_names).params == frozenset()
    assert action(var_kwargs).params == frozenset()


def test_context_params_of_a_class_come_from_its_init() -> None:
    @action
    class WithInit:
        def __init__(self, initial_context: Context) -> None:
            self.context = initial_context

    @action
    class WithoutInit:
        pass

    assert WithInit.params == {"initial_context"}
    assert WithoutInit.params == frozenset()


def test_context_params_of_callables_without_a_signature() -> None:
    assert action(print).params == frozenset()


# --- async detection ------------------------------------------------------------------


def test_async_detection() -> None:
    async def coro(previous_context: Context) -> int:
        return 1

    class AsyncCallable:
        async def __call__(self) -> int:
            return 1

    class SyncCallable:
        def __call__(self) -> int:
            return 1

    assert action(coro).is_async is True
    assert action(functools.partial(coro)).is_async is True
    assert action(functools.partial(functools.partial(coro))).is_async is True
    assert action(AsyncCallable()).is_async is True
    assert action(SyncCallable()).is_async is False
    assert action(lambda: 1).is_async is False


# --- calling directly -----------------------------------------------------------------


def test_calling_an_action_calls_the_function() -> None:
    calls: list[tuple[Any, ...]] = []

    @action(retry=3)
    def step(a: int, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    assert step(1, b=2) == 3
    assert calls == [(1, 2)]  # one call: retries only happen inside a flow


async def _double(x: int) -> int:
    return 2 * x


def test_calling_an_async_action_returns_its_coroutine() -> None:
    import anyio

    step = action(_double)
    assert anyio.run(step, 21) == 42


# --- nesting --------------------------------------------------------------------------


def test_action_over_an_action_takes_the_new_options() -> None:
    async def fetch() -> int:
        return 1

    inner = action(retry=2, timeout=5)(fetch)
    outer = action(retry=4, backoff=True)(inner)
    assert outer.func is fetch
    assert (outer.attempts, outer.timeout, outer.backoff) == (4, None, True)
    assert outer.is_async is True
    assert (inner.attempts, inner.timeout) == (2, 5.0)


def test_function_attributes_do_not_override_action_settings() -> None:
    def step() -> None:
        pass

    step.retry = 99  # type: ignore[attr-defined]
    step.name = "other"  # type: ignore[attr-defined]
    wrapped = action(step)
    assert wrapped.retry == 1
    assert wrapped.name == "test_function_attributes_do_not_override_action_settings.<locals>.step"


# --- as_action ------------------------------------------------------------------------


def test_as_action_wraps_plain_callables_and_keeps_actions() -> None:
    def plain() -> None:
        pass

    wrapped = as_action(plain)
    assert isinstance(wrapped, Action)
    assert wrapped.func is plain
    assert wrapped.attempts == 1
    already = action(retry=3)(plain)
    assert as_action(already) is already


@pytest.mark.parametrize("step", [None, 1, "step", ["f"], b"x"], ids=repr)
def test_as_action_refuses_non_callables(step: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        as_action(step)
    message = str(caught.value)
    assert message.startswith("step must be a function, coroutine function or class")
    assert f"got {type(step).__name__}: {step!r}" in message


# --- class-based steps ----------------------------------------------------------------


class Base:
    @action
    def extract(self) -> str:
        return "base-extract"

    def helper(self) -> str:
        return "helper"

    @action(retry=2)
    def transform(self, previous_context: Context) -> str:
        return "base-transform"


class Child(Base):
    @action
    def load(self) -> str:
        return "load"

    @action
    def extract(self) -> str:  # overridden action: keeps the base's position
        return "child-extract"

    @action
    async def audit(self, initial_context: Context) -> str:
        return "audit"


class NoLongerAStep(Base):
    def transform(self, previous_context: Context) -> str:  # type: ignore[override]
        return "plain override"


def test_class_methods_in_definition_order_bases_first() -> None:
    step = action(Child)
    assert step.is_class is True
    assert step.is_async is False
    methods = step.methods()
    assert [m.func.__name__ for m in methods] == ["extract", "transform", "load", "audit"]
    assert methods[0].func(Child()) == "child-extract"
    assert methods[1].attempts == 2
    assert methods[1].params == {"previous_context"}
    assert methods[3].is_async is True
    assert methods[3].params == {"initial_context"}


def test_overriding_an_action_with_a_plain_method_removes_the_step() -> None:
    methods = action(NoLongerAStep).methods()
    assert [m.func.__name__ for m in methods] == ["extract"]


def test_function_step_has_no_methods() -> None:
    assert action(named_step).methods() == []


def test_class_attributes_do_not_override_action_settings() -> None:
    @action(retry=2)
    class Pipeline:
        name = "pipeline"
        timeout = 30
        retry = 9

        @action
        def methods(self) -> str:  # a step that happens to share a name with Action.methods
            return "m"

    assert Pipeline.name.endswith("<locals>.Pipeline")
    assert Pipeline.timeout is None
    assert Pipeline.retry == 2
    assert [m.func.__name__ for m in Pipeline.methods()] == ["methods"]


def test_action_methods_bind_on_instances() -> None:
    instance = Child()
    assert instance.extract() == "child-extract"
    assert instance.helper() == "helper"
    assert isinstance(Child.__dict__["load"], Action)
    assert Child.load is Child.__dict__["load"]  # class access gives the Action


def test_calling_a_class_action_instantiates_it() -> None:
    step = action(Child)
    assert isinstance(step(), Child)


def test_code_hash_survives_a_source_file_that_no_longer_parses(tmp_path: Path) -> None:
    import importlib.util
    import linecache

    source = tmp_path / "edited_step.py"
    source.write_text("def step():\n    return 1\n")
    spec = importlib.util.spec_from_file_location("edited_step", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source.write_text("def step(:\n    return (1\n")  # edited on disk after the import
    linecache.checkcache(str(source))
    wrapped = action(module.step)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert wrapped.code_hash.startswith(f"b2-{version}:")  # the bytecode's hash, not an error
