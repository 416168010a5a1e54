"""Issue 24: Celery's state and exception names, each the cloudq object itself; custom states
round-trip through a result record; get_task_logger records name the running task."""

from __future__ import annotations

import logging

import pytest

from cloudq import App, errors, exceptions, states
from cloudq.results.base import TaskResult
from cloudq.utils.log import get_task_logger


def test_state_names_and_sets_are_celerys() -> None:
    assert states.SUCCESS == "SUCCESS" and states.PENDING == "PENDING"
    assert {"SUCCESS", "FAILURE", "REVOKED"} == states.READY_STATES
    assert {"FAILURE", "REVOKED"} == states.PROPAGATE_STATES
    assert (
        states.precedence("SUCCESS") < states.precedence("PROGRESS") < states.precedence("PENDING")
    )


def test_a_custom_state_survives_a_record_round_trip() -> None:
    record = TaskResult(task_id="t", state="PROGRESS", result={"done": 3})
    again = TaskResult.model_validate_json(record.model_dump_json())
    assert (again.state, again.ready, again.result) == ("PROGRESS", False, {"done": 3})
    assert again.state is not states.SUCCESS
    assert TaskResult(task_id="t", state="SUCCESS").state is states.SUCCESS
    with pytest.raises(ValueError, match="non-empty"):
        TaskResult(task_id="t", state="")


def test_exception_names_are_aliases_never_second_classes() -> None:
    assert exceptions.MaxRetriesExceededError is errors.MaxRetriesExceededError
    assert exceptions.SoftTimeLimitExceeded is errors.SoftTimeLimitExceeded
    assert exceptions.NotRegistered is errors.NotRegistered
    assert exceptions.CeleryError is errors.CloudqError
    assert exceptions.ImproperlyConfigured is errors.ConfigurationError
    assert exceptions.TimeoutError is TimeoutError
    assert issubclass(exceptions.Retry, exceptions.TaskPredicate)
    reject = exceptions.Reject("bad row", requeue=True)
    assert (reject.reason, reject.requeue, str(reject)) == ("bad row", True, "rejected: bad row")


def test_task_logger_records_carry_task_name_and_id(
    cloudq_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    logger = get_task_logger("tests.compat.tasks")
    assert logger.parent is logging.getLogger("cloudq.task")

    @cloudq_app.task
    def work() -> None:
        logger.info("working")

    with caplog.at_level(logging.INFO, logger="tests.compat.tasks"):
        result = work.apply()
    (record,) = [r for r in caplog.records if r.name == "tests.compat.tasks"]
    assert record.task_name == work.name  # type: ignore[attr-defined]
    assert record.task_id == result.id  # type: ignore[attr-defined]
