"""Kills elsewhere must not dead-letter a healthy task (issue 26, finding 12).

Deterministic, on ``memory://`` with a fake clock: a "killed" worker is one that received a
batch through its receive path (``Worker._take``) and is then dropped, its deliveries neither
run nor acked; the clock moves past the lease so the broker hands them out again, one receive
count up, as after a SIGKILL. The memory broker dead-letters past ``queue_max_receive_count``
(reason ``MaxReceiveCountExceeded``), as SQS's redrive does (with no reason at all).
"""

from __future__ import annotations

import json
import queue as queue_mod
import uuid

from cloudq import App
from cloudq.adapters.base import Delivery, dead_letter_queue_name
from cloudq.adapters.memory import MAX_RECEIVE_COUNT_REASON
from cloudq.clock import FakeClock
from cloudq.envelope import decode
from cloudq.execute import execute
from cloudq.redelivery import FRESH_STARTS_ATTRIBUTE, MAX_FRESH_STARTS
from cloudq.results.base import State
from cloudq.settle import settle
from cloudq.worker import Worker

QUEUE = "work"
LEASE = 3.0
MAX_RECEIVES = 10


def _app(broker_query: str = "", **settings: object) -> tuple[App, FakeClock, list[int]]:
    clock = FakeClock()
    name = uuid.uuid4().hex
    app = App(
        "redelivery",
        broker=f"memory://{name}{broker_query}",
        backend=f"memory://{name}",
        clock=clock,
        **({"queue_lease_seconds": LEASE, "queue_max_receive_count": MAX_RECEIVES} | settings),  # type: ignore[arg-type]
    )
    ran: list[int] = []

    @app.task(name="t.noop", queue=QUEUE)
    def noop(i: int) -> None:
        ran.append(i)

    app.ensure_queue(QUEUE)
    return app, clock, ran


def _killed_worker(app: App, clock: FakeClock) -> int:
    """A worker receives a full batch and is SIGKILLed before it runs any: nothing is acked,
    its leases lapse. Returns how many deliveries it held."""
    worker = Worker(app, [QUEUE], concurrency=4)
    held = worker._take(app.broker.receive(QUEUE, app.broker.limits.max_batch, 0, worker.lease))
    clock.advance(worker.lease + 1)
    return held


def _live_worker(app: App, clock: FakeClock, rounds: int = 50) -> None:
    """A worker that lives: receives through the same path and runs what it holds."""
    worker = Worker(app, [QUEUE], concurrency=4)
    for _ in range(rounds):
        worker._take(app.broker.receive(QUEUE, app.broker.limits.max_batch, 0, worker.lease))
        while True:
            try:
                item = worker._jobs.get_nowait()
            except queue_mod.Empty:
                break
            assert isinstance(item, Delivery)
            settle(app, item, execute(item, app))
        clock.advance(1)


def _dead_letters(app: App) -> list[Delivery]:
    dlq = dead_letter_queue_name(QUEUE)
    out: list[Delivery] = []
    while got := app.broker.receive(dlq, 10, 0, 60):
        out += got
    return out


def test_kills_elsewhere_do_not_dead_letter_healthy_tasks() -> None:
    app, clock, ran = _app()
    noop = app.tasks["t.noop"]
    for i in range(10):
        noop.delay(i)
    # The same ten messages sit in every killed worker's prefetch (moto hands out the oldest
    # first): more kills than the queue's max receive count.
    for _ in range(MAX_RECEIVES + 2):
        _killed_worker(app, clock)
    _live_worker(app, clock)

    dead = _dead_letters(app)
    reasons = [d.attributes.get("cloudq-dead-letter-reason") for d in dead]
    assert reasons == [], "healthy tasks were dead-lettered by kills elsewhere"
    assert sorted(ran) == list(range(10))
    stats = app.broker.stats(QUEUE)
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 0, 0)


def test_a_fresh_copy_is_the_same_signed_envelope_attempt_unchanged() -> None:
    app, clock, _ = _app(signing_keys=["k1"])
    sent = app.tasks["t.noop"].delay(7)
    [first] = app.broker.receive(QUEUE, 1, 0, LEASE)
    app.broker.release([first], 0)
    for _ in range(MAX_RECEIVES - 2):  # up to the receive the fresh start is due on
        _killed_worker(app, clock)
    [copy] = app.broker.receive(QUEUE, 1, 0, LEASE)
    assert copy.receive_count == 1, "not started fresh"
    assert copy.body == first.body, "the copy must be the very envelope, signature included"
    assert copy.attributes[FRESH_STARTS_ATTRIBUTE] == "1"
    envelope = decode(copy.body)
    assert (envelope.id, envelope.attempt) == (sent.id, decode(first.body).attempt)


def test_an_unverified_message_is_never_restarted_it_is_dead_lettered_with_its_reason() -> None:
    app, clock, ran = _app(signing_keys=["k1"])
    app.tasks["t.noop"].delay(1)
    [d] = app.broker.receive(QUEUE, 1, 0, LEASE)
    app.broker.ack([d])
    tampered = json.loads(d.body)
    tampered["args"] = [666]
    from cloudq.adapters.base import OutgoingMessage

    app.broker.send(QUEUE, [OutgoingMessage(json.dumps(tampered).encode(), message_id="bad")])
    for _ in range(MAX_RECEIVES - 2):
        _killed_worker(app, clock)
    _live_worker(app, clock, rounds=2)
    [dead] = _dead_letters(app)
    assert "signature does not match" in dead.attributes["cloudq-dead-letter-reason"]
    assert FRESH_STARTS_ATTRIBUTE not in dead.attributes, "an unverified message was re-sent"
    assert ran == []


def test_a_message_that_kills_every_worker_still_ends_in_the_dlq_with_a_reason() -> None:
    app, clock, ran = _app()
    sent = app.tasks["t.noop"].delay(13)  # stands for a task that segfaults its worker
    kills = 0
    while not app.broker.stats(QUEUE).dead_lettered and kills < 200:
        kills += 1
        _killed_worker(app, clock)
    [dead] = _dead_letters(app)
    reason = dead.attributes["cloudq-dead-letter-reason"]
    assert reason != MAX_RECEIVE_COUNT_REASON, "left to the broker's redrive, which has no reason"
    assert "without an outcome" in reason and "fresh" in reason, reason
    # Bounded: each fresh start is received up to the one before the broker's last receive.
    assert MAX_RECEIVES < kills <= (MAX_FRESH_STARTS + 1) * (MAX_RECEIVES - 1), kills
    assert ran == []
    result = app.backend.get(sent.id) if app.backend is not None else None
    assert result is not None and result.state == State.FAILURE
    assert result.error is not None and result.error.type == "cloudq.errors.WorkerLostError"
    headers = decode(dead.body).headers
    assert headers["cloudq-error-type"] == "cloudq.errors.WorkerLostError"


def test_held_deferrals_on_a_broker_without_native_delay_are_not_taken_for_lost_ones() -> None:
    # Pub/Sub's shape: no native delay, so a deferred message is held (a receive) once, then
    # re-sent as a hop (settle.HOLDS_BEFORE_RESEND); with a low max receive count a hold must not
    # count as a lost delivery, or a long eta would end in the dead-letter queue.
    app, clock, ran = _app("?max_delay_seconds=0&max_lease_seconds=10", queue_max_receive_count=3)
    app.tasks["t.noop"].apply_async((5,), countdown=120)
    _live_worker(app, clock, rounds=200)
    assert ran == [5]
    assert _dead_letters(app) == []


def test_a_forged_fresh_start_count_cannot_lift_the_bound() -> None:
    from cloudq.redelivery import fresh_starts

    def count(value: str) -> int:
        return fresh_starts(Delivery("q", b"", "m", 9, attributes={FRESH_STARTS_ATTRIBUTE: value}))

    assert [count(v) for v in ["0", "1", "2", "7", "-1", "x", "1e9", "", "\u0663"]] == [
        0,
        1,
        2,
        MAX_FRESH_STARTS,
        0,
        0,
        0,
        0,
        0,
    ]
