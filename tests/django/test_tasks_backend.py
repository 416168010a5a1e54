"""Django's Tasks framework on cloudq: code written against ``@task`` / ``.enqueue()`` runs in a
real ``cloudq -A proj worker`` on moto SQS, and its results read back as Django's
``TaskResult`` (the backport on Django 5.2; Django 6's own ``django.tasks`` where installed)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.processes import LoggedProcess, wait_for

pytestmark = pytest.mark.integration


def finished(result: Any) -> bool:
    result.refresh()
    return bool(result.is_finished)


def test_enqueue_runs_on_the_worker_and_get_result_reads_it(worker: LoggedProcess) -> None:
    from shop.tasks import add, attempt_report, broken, count_orders

    from cloudq.contrib.django.framework import TaskResultStatus, task_backends

    result = add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert add.get_result(result.id).status == TaskResultStatus.READY, "known before it runs"

    wait_for(lambda: finished(result), 30, "add to finish", worker.log)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    fresh = task_backends["default"].get_result(result.id)
    assert (fresh.status, fresh.return_value, fresh.args) == (
        TaskResultStatus.SUCCESSFUL,
        5,
        [2, 3],
    )
    assert fresh.task.func is add.func and fresh.finished_at is not None
    assert fresh.enqueued_at == result.enqueued_at

    counted = count_orders.enqueue(item="nothing-has-this")
    report = attempt_report.enqueue("weekly")  # queue_name="reports", takes_context
    failed = broken.enqueue("bad input")
    for r in (counted, report, failed):
        wait_for(lambda r=r: finished(r), 30, f"{r.task.name} to finish", worker.log)
    assert counted.return_value == 0, "the worker's ORM works (django.setup() ran)"
    assert report.return_value == {"label": "weekly", "attempt": 1, "id": report.id}
    assert failed.status == TaskResultStatus.FAILED
    [error] = failed.errors
    assert error.exception_class is ValueError and "bad input" in error.traceback
    assert failed.args == ["bad input"], "a failed task's arguments are kept"


def test_unknown_result_id_does_not_exist(django_env: dict[str, str]) -> None:
    from shop.tasks import add

    from cloudq.contrib.django.framework import TaskResultDoesNotExist

    with pytest.raises(TaskResultDoesNotExist):
        add.get_result("no-such-id")


def test_run_after_is_the_eta(worker: LoggedProcess, project_app: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from shop.tasks import add

    from cloudq.contrib.django.framework import TaskResultStatus

    due = datetime.now(UTC) + timedelta(seconds=1)
    result = add.using(run_after=due).enqueue(1, 1)
    assert project_app.broker.stats("default").delayed == 1, "the broker holds it until due"
    wait_for(lambda: finished(result), 30, "the deferred add to finish", worker.log)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.finished_at is not None and result.finished_at >= due


def test_a_failed_send_leaves_no_result_behind(
    django_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings
    from django.test import override_settings
    from shop.tasks import add

    from cloudq import App
    from cloudq.contrib.django.framework import TaskResultDoesNotExist
    from cloudq.contrib.django.tasks import CALL_SUFFIX

    down = App("down", broker="memory://", backend="memory://down", set_as_current=False)
    stored: list[str] = []
    real_store = down.backend.store

    def store(record: Any, expires: Any) -> None:
        stored.append(record.task_id)
        real_store(record, expires)

    def outage(envelopes: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(down.backend, "store", store)
    monkeypatch.setattr(down, "send_envelopes", outage)
    backend = {"BACKEND": "cloudq.contrib.django.tasks.CloudqBackend", "OPTIONS": {"app": down}}
    with override_settings(TASKS={**settings.TASKS, "down": backend}):
        task = add.using(backend="down")
        with pytest.raises(ConnectionError):
            task.enqueue(1, 2)
        [call_id] = stored
        with pytest.raises(TaskResultDoesNotExist):
            task.get_result(call_id.removesuffix(CALL_SUFFIX))
