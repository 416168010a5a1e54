"""Issue 24: ``app.send_task(name, args=, kwargs=, **options)`` from a producer without the
task's code: routed by ``task_routes``, returning an AsyncResult, run by a worker that has it."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App, TaskArgumentError
from cloudq.outcome import DeadLetter, RetryAt
from cloudq.testing import process_one


def pair() -> tuple[App, App]:
    name = uuid.uuid4().hex
    urls = {"broker": f"memory://{name}", "backend": f"memory://{name}"}
    return App("producer", **urls), App("worker", **urls)


def test_send_task_by_name_routed_and_run_by_the_worker() -> None:
    producer, worker = pair()
    producer.conf.task_routes = {"billing.*": {"queue": "billing"}}

    @worker.task(name="billing.charge", max_retries=4, autoretry_for=(KeyError,))
    def charge(order_id: int, amount: float = 0.0) -> str:
        return f"{order_id}:{amount}"

    result = producer.send_task("billing.charge", args=[42], kwargs={"amount": 9.5})
    assert process_one(worker, "billing") is not None
    assert result.get(timeout=1) == "42:9.5"
    assert result.id and producer.AsyncResult(result.id).state == "SUCCESS"


def test_send_task_uses_the_workers_retry_policy() -> None:
    producer, worker = pair()

    @worker.task(
        name="billing.flaky", max_retries=1, autoretry_for=(KeyError,), default_retry_delay=0
    )
    def flaky() -> None:
        raise KeyError("x")

    producer.send_task("billing.flaky", countdown=0)
    assert isinstance(process_one(worker), RetryAt)
    assert isinstance(process_one(worker), DeadLetter)  # the worker's max_retries=1, not 3


def test_send_task_checks_json_only_and_the_worker_checks_types() -> None:
    producer, worker = pair()

    @worker.task(name="math.add")
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TaskArgumentError, match="not JSON"):
        producer.send_task("math.add", args=[object(), 1])
    bad = producer.send_task("math.add", args=["1", 2])
    assert isinstance(process_one(worker), DeadLetter)
    with pytest.raises(Exception, match=r"invalid|argument"):
        bad.get(timeout=1)
