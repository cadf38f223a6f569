"""What Dotflow code reads keeps working: UUID workflow ids, status strings, error fields.

docs/migrating.md lists every Dotflow name; these are the ones asyncflow
takes as Dotflow does at no cost, each checked against the behaviour of
Dotflow 1.0.1 (see the table for the rest).
"""

from __future__ import annotations

import dataclasses
import uuid

import anyio
import pytest

from asyncflow import (
    AsyncFlow,
    Config,
    ConfigurationError,
    SerializationError,
    TaskFailed,
    TaskStatus,
    TaskTimeout,
    TypeStatus,
    action,
)
from asyncflow.providers import Storage, StorageFile

pytestmark = pytest.mark.anyio


# -- workflow_id -----------------------------------------------------------------


async def test_a_uuid_workflow_id_is_its_str_and_resumes(tmp_path: object) -> None:
    """Dotflow's checkpoint examples pass ``uuid4()``; the same UUID resumes the same run."""
    wf = uuid.uuid4()
    calls = 0

    @action
    async def step() -> int:
        nonlocal calls
        calls += 1
        return 1

    for _ in range(2):
        flow = AsyncFlow(config=Config(storage=StorageFile(str(tmp_path))), workflow_id=wf)
        flow.task.add(step=step)
        await flow.start(resume=True)
        assert flow.workflow_id == str(wf)
        assert flow.status == "completed"
    assert calls == 1


@pytest.mark.parametrize("bad", [12, b"wf", 1.5, ["wf"]])
def test_other_non_str_workflow_ids_are_refused_by_name(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"workflow_id must be a str or a uuid\.UUID"):
        AsyncFlow(workflow_id=bad)  # type: ignore[arg-type]


# -- statuses --------------------------------------------------------------------


@pytest.mark.parametrize("status", list(TaskStatus))
def test_a_status_formats_as_its_value(status: TaskStatus) -> None:
    assert f"{status}" == str(status) == format(status) == status.value
    assert "%s" % status == status.value  # noqa: UP031 - Dotflow code uses it
    assert f"{status:>14}" == f"{status.value:>14}"
    assert status == status.value
    assert TypeStatus is TaskStatus


async def test_a_finished_tasks_status_prints_as_in_dotflow() -> None:
    @action
    async def step() -> None:
        return None

    flow = AsyncFlow()
    flow.task.add(step=step)
    await flow.start()
    assert f"{flow.result_task()[0].status}" == "Completed"


# -- errors ----------------------------------------------------------------------


async def run_one(step: object, **start: object) -> AsyncFlow:
    flow = AsyncFlow(workflow_id="compat")
    flow.task.add(step=step)
    await flow.start(on_failure=lambda tasks: None, **start)  # type: ignore[arg-type]
    return flow


async def test_each_attempts_error_carries_dotflows_fields() -> None:
    @action(retry=3)
    def step_with_retry() -> None:
        raise ValueError("Something went wrong")

    task = (await run_one(step_with_retry)).result_task()[0]
    assert task.retry_count == 2
    assert [(e.attempt, e.exception, e.message) for e in task.errors] == [
        (1, "ValueError", "Something went wrong"),
        (2, "ValueError", "Something went wrong"),
        (3, "ValueError", "Something went wrong"),
    ]
    assert task.error is task.errors[-1]
    assert isinstance(task.error, ValueError)


async def test_fields_the_exception_defines_itself_are_left_alone() -> None:
    class ApiError(Exception):
        message = "the API's own message"

        def __init__(self, text: str, attempt: str) -> None:
            super().__init__(text)
            self.attempt = attempt

    @action
    async def call() -> None:
        raise ApiError("boom", attempt="theirs")

    error = (await run_one(call)).result_task()[0].error
    assert error is not None
    assert (error.attempt, error.exception, error.message) == (  # type: ignore[attr-defined]
        "theirs",
        "ApiError",
        "the API's own message",
    )


async def test_a_frozen_exception_gets_the_fields_without_being_unfrozen() -> None:
    @dataclasses.dataclass(frozen=True)
    class Rejected(Exception):
        code: int

    @action
    async def call() -> None:
        raise Rejected(7)

    error = (await run_one(call)).result_task()[0].error
    assert isinstance(error, Rejected)
    assert (error.attempt, error.exception) == (1, "Rejected")  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.code = 8  # type: ignore[misc]


async def test_a_timeout_names_its_attempt() -> None:
    @action(retry=2, timeout=0.01)
    async def slow() -> None:
        await anyio.sleep(5)

    task = (await run_one(slow)).result_task()[0]
    assert all(isinstance(e, TaskTimeout) for e in task.errors)
    assert [(e.attempt, e.exception) for e in task.errors] == [  # type: ignore[attr-defined]
        (1, "TaskTimeout"),
        (2, "TaskTimeout"),
    ]
    assert "timed out" in task.errors[0].message  # type: ignore[attr-defined]


async def test_an_output_that_cannot_be_stored_is_a_failed_attempt_too() -> None:
    @action
    async def opaque() -> object:
        return object()

    task = (await run_one(opaque)).result_task()[0]
    assert isinstance(task.error, SerializationError)
    assert (task.error.attempt, task.error.exception) == (  # type: ignore[attr-defined]
        1,
        "SerializationError",
    )


async def test_task_failed_describes_the_steps_own_exception() -> None:
    @action(retry=2)
    async def load() -> None:
        raise KeyError("row 7")

    with pytest.raises(TaskFailed) as caught:
        await run_one(load, raise_on_failure=True)
    error = caught.value
    assert (error.attempt, error.exception, error.message) == (2, "KeyError", "'row 7'")
    assert isinstance(error.__cause__, KeyError)


def test_a_task_error_without_a_cause_describes_itself() -> None:
    error = TaskFailed("the cluster is gone", step="load")
    assert (error.attempt, error.exception, error.message) == (
        None,
        "TaskFailed",
        "the cluster is gone",
    )


async def test_retry_count_of_a_step_that_succeeded_on_its_third_attempt(
    storage: Storage,
) -> None:
    tries = 0

    @action(retry=5)
    async def flaky() -> int:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionError(tries)
        return tries

    flow = AsyncFlow(config=Config(storage=storage), workflow_id="compat-retry")
    flow.task.add(step=flaky)
    await flow.start()
    task = flow.result_task()[0]
    assert task.status is TaskStatus.COMPLETED
    assert task.retry_count == 2
    assert [e.attempt for e in task.errors] == [1, 2]  # type: ignore[attr-defined]
