"""``priority=``: levels, sub-queue names, the expanded worker queue list, where queues are made."""

from __future__ import annotations

import logging
import uuid

import pytest

from cloudq import App
from cloudq.deploy.tfvars import export_tfvars
from cloudq.errors import ConfigurationError
from cloudq.priority import LEVELS, expand, level, levels_of, sub_queue
from cloudq.testing import start_worker, wait_for
from cloudq.worker import Worker
from tests.integration.priority_scenario import urgent_runs_before_the_backlog


def fresh_app(**settings: object) -> App:
    name = uuid.uuid4().hex
    return App("t", broker=f"memory://{name}", backend=f"memory://{name}", **settings)  # type: ignore[arg-type]


def test_levels_bucket_0_to_9_and_clamp_what_comes_off_a_queue() -> None:
    assert LEVELS == 3
    assert [level(p) for p in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert level(None) == 0
    assert (level(-5), level(255)) == (0, 2)  # from a message: clamped, never raised


def test_sub_queue_names_keep_fifo_last() -> None:
    assert levels_of("mail") == ["mail-prio2", "mail-prio1", "mail"]
    assert sub_queue("orders.fifo", 2) == "orders-prio2.fifo"
    assert sub_queue("orders.fifo", 0) == "orders.fifo"


def test_worker_scans_each_queues_sub_queues_first_only_when_on() -> None:
    assert Worker(fresh_app(), ["high", "low"]).queues == ["high", "low"]
    on = fresh_app(task_priority_queues=True)
    assert Worker(on, ["high", "low", "high"]).queues == [
        "high-prio2", "high-prio1", "high", "low-prio2", "low-prio1", "low",
    ]  # fmt: skip
    assert expand(on, ["a.fifo"]) == ["a-prio2.fifo", "a-prio1.fifo", "a.fifo"]


def test_terraform_variables_hold_the_sub_queues() -> None:
    app = App("tf", broker="sqs://?prefix=shop-", task_priority_queues=True)
    app.task(name="orders.place", queue="orders.fifo")(lambda: None)
    queues = export_tfvars(app, "shop.tasks")["queues"]
    assert sorted(queues) == [
        "default", "default-prio1", "default-prio2",
        "orders-prio1.fifo", "orders-prio2.fifo", "orders.fifo",
    ]  # fmt: skip
    assert queues["orders-prio2.fifo"]["fifo"] is True


def test_out_of_range_priority_is_refused_at_the_call() -> None:
    app = fresh_app(task_priority_queues=True)

    @app.task
    def job() -> None: ...

    with pytest.raises(ConfigurationError, match="0-9"):
        job.apply_async(priority=10)
    with pytest.raises(ConfigurationError, match="an int"):
        job.apply_async(priority="high")  # type: ignore[arg-type]


def test_priority_goes_to_its_sub_queue_and_keeps_the_envelope_queue() -> None:
    app = fresh_app(task_priority_queues=True)

    @app.task
    def job() -> None: ...

    job.apply_async(priority=8)
    (delivery,) = app.broker.receive("default-prio2", 10, 0, 30)
    assert b'"queue":"default"' in delivery.body.replace(b" ", b"")


def test_off_priority_is_carried_and_a_warning_says_it_orders_nothing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cloudq.priority._warned", False)
    app = fresh_app()

    @app.task
    def job() -> None: ...

    with caplog.at_level(logging.WARNING, logger="cloudq.priority"):
        job.apply_async(priority=9)
        job.apply_async(priority=9)
    assert caplog.text.count("orders nothing while task_priority_queues is off") == 1
    assert len(app.broker.receive("default", 10, 0, 30)) == 2


def test_urgent_task_runs_before_the_backlog_on_memory() -> None:
    urgent_runs_before_the_backlog(fresh_app(task_priority_queues=True))


def test_a_flood_of_urgent_tasks_does_not_starve_the_normal_ones() -> None:
    app = fresh_app(task_priority_queues=True, worker_fairness_rounds=5)
    order: list[str] = []

    @app.task
    def job(label: str) -> None:
        order.append(label)

    for i in range(20):
        job.apply_async((f"urgent-{i}",), priority=9)
    job.apply_async(("normal",))
    with start_worker(app, ["default"], concurrency=1, prefetch=0):
        wait_for(lambda: len(order) == 21, timeout=10, message="all 21 tasks run")
    assert order.index("normal") < 20, "the normal task waited for every urgent one"
