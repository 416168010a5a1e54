"""The Lambda handler running the Django project's tasks: SQS records from moto fed by the local
event source (``cloudq lambda-local``'s poller), in this process; Django's connections are
closed around each task (``DjangoConnections`` on the hook bus), never inside an eager one."""

from __future__ import annotations

from typing import Any

import pytest

from cloudq.testing import wait_for

pytestmark = pytest.mark.integration
QUEUE = "lambda"  # the session's worker does not consume it


@pytest.fixture
def source(project_app: Any) -> Any:
    from cloudq_sqs.lambda_handler import lambda_handler
    from cloudq_sqs.lambda_local import LocalEventSource

    return LocalEventSource(project_app, lambda_handler(project_app), [QUEUE], timeout_seconds=30)


def drain(source: Any, result: Any) -> None:
    wait_for(
        lambda: source.poll_once(QUEUE, wait_seconds=1) >= 0 and result.ready(),
        timeout=20,
        interval=0,
        message="the handler to run the task",
    )


def test_handler_runs_a_django_task_and_closes_old_connections(source: Any) -> None:
    from django.db import connection
    from shop.models import Order
    from shop.tasks import connection_open, mark_paid

    order = Order.objects.create(item="lamp")
    paid = mark_paid.apply_async((order.pk,), queue=QUEUE)
    drain(source, paid)  # the first invocation is the container's cold start
    assert paid.get(timeout=1) == "lamp"
    assert Order.objects.get(pk=order.pk).paid

    assert connection.connection is not None, "this thread holds an open connection"
    probe = connection_open.apply_async(queue=QUEUE)
    drain(source, probe)  # a warm invocation: only the hooks around the task close it
    assert probe.get(timeout=1) is False, "the connection was not closed before the task"
    assert connection.connection is None, "the connection was not closed after the task"


def test_eager_runs_keep_the_callers_connection(project_app: Any) -> None:
    from django.db import connection, transaction
    from shop.models import Order
    from shop.tasks import connection_open

    with transaction.atomic():
        order = Order.objects.create(item="eager")
        assert connection_open.apply().get() is True
        assert connection.connection is not None, "an eager task closed the caller's connection"
        assert not connection.needs_rollback, "an eager task broke the caller's transaction"
    assert Order.objects.filter(pk=order.pk).exists()
