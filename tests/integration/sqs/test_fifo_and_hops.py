"""SQS specifics through the whole stack: delay hops past the native cap, and FIFO queues."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from cloudq import App, ConfigurationError
from cloudq.testing import start_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.sqs_servers]


def make_app(**options: str) -> App:
    query = "&".join(
        f"{k}={v}" for k, v in {"prefix": f"f{uuid.uuid4().hex[:8]}-", **options}.items()
    )
    return App(
        "fifo",
        broker=f"sqs://?{query}",
        backend=f"memory://{uuid.uuid4().hex}",
        queue_lease_seconds=5,
    )


def test_countdown_past_the_native_cap_hops_and_is_never_early(
    sqs_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(max_delay_seconds="2")
    ran: list[float] = []

    @app.task(name="later")
    def later() -> None:
        ran.append(time.monotonic())

    caplog.set_level(logging.DEBUG, logger="cloudq.settle")
    with start_worker(app, ["default"], poll_seconds=1):
        sent = time.monotonic()
        result = later.apply_async(countdown=5)
        result.get(timeout=20)
    assert ran[0] - sent >= 5.0 - 0.05
    hops = [r for r in caplog.records if "delay hop" in r.getMessage()]
    # Two hops when every receive is on time; one when the first receive came a second late
    # (a loaded machine), since the rest of the wait then fits the cap. Never none.
    assert hops, "a 5 s countdown under a 2 s cap must hop"
    assert len(ran) == 1


def test_fifo_group_order_dedup_retry_and_countdown(sqs_env: str) -> None:
    app = make_app()
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()
    failures: dict[str, int] = {}

    @app.task(name="step", queue="orders.fifo", fifo_group=lambda order, step: f"order-{order}")
    def step(order: int, step: int) -> None:
        with lock:
            seen.append((f"order-{order}", step))

    @app.task(
        name="flaky",
        queue="orders.fifo",
        fifo_group="flaky",
        autoretry_for=(ConnectionError,),
        retry_backoff=1,
        max_retries=2,
    )
    def flaky(key: str) -> float:
        failures[key] = failures.get(key, 0) + 1
        if failures[key] == 1:
            raise ConnectionError("once")
        return time.monotonic()

    app.ensure_queue("orders.fifo")
    for i in range(5):
        step.apply_async((1, i), task_id=f"o1-s{i}")
    step.apply_async((1, 0), task_id="o1-s0")  # a re-sent delay(): deduplicated by task id
    started = time.monotonic()
    retried = flaky.delay("k")
    later = step.apply_async((2, 99), countdown=3)
    with start_worker(app, ["orders.fifo"], concurrency=2, poll_seconds=1):
        done_at = retried.get(timeout=30)
        later.get(timeout=30)
        wait_for(lambda: len(seen) == 6, timeout=20, message="all steps ran")
    assert [s for g, s in seen if g == "order-1"] == [0, 1, 2, 3, 4]
    assert seen.count(("order-1", 0)) == 1
    assert done_at - started >= 1.0, "the retry ran before its backoff"
    assert failures["k"] == 2


def test_fifo_group_on_a_standard_queue_is_refused(sqs_env: str) -> None:
    app = make_app()

    @app.task(name="std", fifo_group="g")
    def std() -> None: ...

    app.ensure_queue("default")
    with pytest.raises(ConfigurationError, match="standard queue"):
        std.delay()
    assert app.broker.stats("default").visible == 0
