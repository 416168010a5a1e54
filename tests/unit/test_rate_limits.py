"""Rate limits: exact slots with a fake clock; across three workers with real Redis."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from cloudq import App
from cloudq.outcome import Defer
from cloudq.testing import FakeClock, process_one, start_worker, wait_for


def test_over_the_limit_is_deferred_to_exact_slots_and_is_not_an_attempt() -> None:
    clock = FakeClock()
    name = uuid.uuid4().hex
    app = App("r", broker=f"memory://{name}", backend=f"memory://{name}", clock=clock)
    ran: list[tuple[float, int]] = []
    start = clock.monotonic()

    @app.task(rate_limit="2/s", bind=True)
    def limited(self) -> None:  # type: ignore[no-untyped-def]
        ran.append((clock.monotonic() - start, self.request.attempt))

    for _ in range(5):
        limited.delay()
    deferred = 0
    for _ in range(200):
        outcome = process_one(app)
        if outcome is None:
            clock.advance(0.25)  # exact in binary: the slots are reached exactly
        elif isinstance(outcome, Defer):
            deferred += 1
        if len(ran) == 5:
            break
    assert [round(t, 2) for t, _ in ran] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert all(attempt == 1 for _, attempt in ran)
    assert deferred == 4
    assert app.broker.stats("default").dead_lettered == 0


def test_app_default_rate_applies_to_tasks_without_their_own() -> None:
    app = App("r", broker=f"memory://{uuid.uuid4().hex}", task_default_rate_limit="5/m")

    @app.task
    def plain() -> None: ...

    @app.task(rate_limit="10/s")
    def own() -> None: ...

    assert plain.rate is not None and plain.rate.per_second == pytest.approx(5 / 60)
    assert own.rate is not None and own.rate.per_second == 10


def test_without_a_shared_store_limits_per_worker_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cloudq.rate_limits import LocalRateLimiter

    app = App("r", broker=f"memory://{uuid.uuid4().hex}")
    with caplog.at_level(logging.WARNING, logger="cloudq"):
        limiter = app.rate_limiter
    assert isinstance(limiter, LocalRateLimiter)
    assert "enforced per worker" in caplog.text


def test_three_workers_share_one_rate_through_redis(redis_url: str) -> None:
    """200 tasks at 20/s over three workers: observed rate within 10 % of 20/s, none lost."""
    name = uuid.uuid4().hex
    backend = f"{redis_url}?prefix={name}"
    starts: list[float] = []
    lock = threading.Lock()
    apps = []
    for _ in range(3):
        app = App("r", broker=f"memory://{name}", backend=backend)

        @app.task(name="limited", rate_limit="20/s", ignore_result=True)
        def limited(i: int) -> None:
            with lock:
                starts.append(time.monotonic())

        apps.append(app)
    for i in range(200):
        apps[0].tasks["limited"].delay(i)
    with (
        start_worker(apps[0], ["default"], concurrency=4, poll_seconds=0.05),
        start_worker(apps[1], ["default"], concurrency=4, poll_seconds=0.05),
        start_worker(apps[2], ["default"], concurrency=4, poll_seconds=0.05),
    ):
        wait_for(lambda: len(starts) >= 200, timeout=30, message="200 tasks ran")
    starts.sort()
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert len(starts) == 200
    assert 18.0 <= rate <= 22.0, f"observed {rate:.2f}/s"
