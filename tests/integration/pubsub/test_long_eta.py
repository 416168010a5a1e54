"""A 2-hour countdown on a broker without native delay, with a fake clock.

Pub/Sub has no delay and counts every nack or deadline expiry as a delivery attempt. The design
(``cloudq.settle``): a message not yet due is held once by its ack deadline (at most 600 s), then
re-published fresh with its eta (a hop) and acknowledged. So a 2-hour eta is 12 holds and 11
hops, no delivery ever gets past attempt 2, nothing is dead-lettered, and no worker holds it.

Two runs of the same walk: on the memory broker given Pub/Sub's limits (instant, exact), and on
the emulator itself, whose delivery attempts are Pub/Sub's own (each 600 s hold shortened to 1 s
with ``max_lease_seconds=1`` while the fake clock moves the 600 s; 30 minutes there, to keep
the real waiting short: the walk is the same, three holds instead of twelve).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from cloudq import App
from cloudq.clock import FakeClock
from cloudq.execute import execute
from cloudq.outcome import Ack, Defer
from cloudq.settle import settle
from tests.fixtures.pubsub_emulator import GCP_PROJECT, unique_prefix
from tests.integration.pubsub.helpers import nothing_visible

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TWO_HOURS = 7200
HOLD = 600  # Pub/Sub's longest ack deadline


@dataclass
class Walk:
    deliveries: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since sending, delivery attempt) of every delivery."""
    holds: int = 0
    hops: int = 0
    ran_at: float | None = None


def walk(app: App, clock: FakeClock, sent: datetime, wait: float, on_hold: float) -> Walk:
    """Receive, execute and settle until the task ran, moving the fake clock ``on_hold`` seconds
    per hold (and a minute at a time when nothing came)."""
    seen = Walk()
    for _ in range(1000):
        got = app.broker.receive("default", 1, wait, 30)
        if not got:
            clock.advance(60)
            continue
        (delivery,) = got
        elapsed = (clock.now() - sent).total_seconds()
        seen.deliveries.append((elapsed, delivery.receive_count))
        outcome = execute(delivery, app)
        settle(app, delivery, outcome)
        if isinstance(outcome, Defer) and delivery.receive_count == 1:
            seen.holds += 1
            clock.advance(on_hold)
        elif isinstance(outcome, Defer):
            seen.hops += 1
        else:
            assert isinstance(outcome, Ack)
            seen.ran_at = elapsed
            return seen
    pytest.fail(f"the task never ran: {seen}")


def check(seen: Walk, countdown: int) -> None:
    assert seen.ran_at is not None and countdown <= seen.ran_at < countdown + 60, seen
    assert max(count for _, count in seen.deliveries) == 2, "never past attempt 2"
    assert seen.holds == countdown // HOLD, seen
    assert seen.hops == seen.holds - 1, seen
    assert all(at <= countdown for at, _ in seen.deliveries)


def make_app(broker: str, clock: FakeClock, runs: list[datetime]) -> App:
    app = App("eta", broker=broker, clock=clock, queue_max_receive_count=5)

    @app.task(name="later")
    def later() -> None:
        runs.append(clock.now())

    return app


def test_two_hour_countdown_with_pubsub_limits_on_the_memory_broker() -> None:
    clock = FakeClock()
    runs: list[datetime] = []
    url = f"memory://{uuid.uuid4().hex}?max_delay_seconds=0&max_lease_seconds={HOLD}"
    app = make_app(url, clock, runs)
    app.ensure_queue("default")
    sent = clock.now()
    app.tasks["later"].apply_async(countdown=TWO_HOURS)
    # The memory broker's leases run on the fake clock: the walk's own clock moves end them.
    check(walk(app, clock, sent, wait=0, on_hold=0), TWO_HOURS)
    assert runs == [sent + timedelta(seconds=TWO_HOURS)]
    assert app.broker.stats("default").dead_lettered == 0


def test_half_hour_countdown_on_the_emulator(pubsub_env: str) -> None:
    countdown = 1800
    clock = FakeClock()
    runs: list[datetime] = []
    url = f"pubsub://{GCP_PROJECT}?prefix={unique_prefix('eta')}&max_lease_seconds=1"
    app = make_app(url, clock, runs)
    try:
        assert app.broker.limits.max_delay_seconds == 0
        app.ensure_queue("default")
        sent = clock.now()
        app.tasks["later"].apply_async(countdown=countdown)
        check(walk(app, clock, sent, wait=3, on_hold=HOLD), countdown)
        assert len(runs) == 1 and runs[0] >= sent + timedelta(seconds=countdown)
        assert nothing_visible(app, "default-dlq", wait=0.5), "nothing was dead-lettered"
    finally:
        app.close()
