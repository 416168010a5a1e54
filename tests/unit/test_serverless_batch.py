"""``run_batch()``: the one batch loop of the three serverless handlers, on the memory broker."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import Delivery
from cloudq.errors import EnvelopeError
from cloudq.outcome import Defer, Outcome
from cloudq.serverless import BatchRecord, RecordResult, Status, run_batch


@pytest.fixture
def app() -> App:
    name = uuid.uuid4().hex
    app = App("sl", broker=f"memory://{name}", backend=f"memory://{name}")

    @app.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    return app


def record(app: App, index: int, queue: str = "default", **options: Any) -> BatchRecord:
    envelope = app.tasks["double"].envelope([index], {}, **options)
    delivery = Delivery(
        queue=queue, body=envelope.encode(), message_id=f"m-{index}", receive_count=1
    )
    return BatchRecord(id=f"m-{index}", decode=lambda: delivery, fifo=queue.endswith(".fifo"))


def broken(index: int, fifo: bool) -> BatchRecord:
    def decode() -> Delivery:
        raise EnvelopeError(f"record {index} is unreadable")

    return BatchRecord(id=f"m-{index}", decode=decode, fifo=fifo)


class Settled(list[tuple[Delivery, Outcome]]):
    def __call__(self, app: App, delivery: Delivery, outcome: Outcome, ack: Any) -> None:
        self.append((delivery, outcome))


def test_a_fifo_batch_stops_at_its_first_failure(app: App) -> None:
    failures: list[RecordResult] = []
    settled = Settled()
    batch = [record(app, 1, "q.fifo"), broken(2, fifo=True), record(app, 3, "q.fifo")]
    results = run_batch(app, "test", batch, on_failure=failures.append, settle=settled)
    assert [r.status for r in results] == [Status.SETTLED, Status.FAILED, Status.NOT_STARTED]
    assert [r.record.id for r in failures] == ["m-2"]
    assert isinstance(failures[0].error, EnvelopeError)
    assert [d.message_id for d, _ in settled] == ["m-1"], "nothing runs after a FIFO failure"


def test_elsewhere_a_failure_or_a_foreign_record_fails_alone(app: App) -> None:
    settled = Settled()
    foreign = BatchRecord(id="m-0", decode=lambda: None, fifo=True)
    batch = [foreign, record(app, 1), broken(2, fifo=False), record(app, 3)]
    results = run_batch(app, "test", batch, settle=settled)
    statuses = [r.status for r in results]
    assert statuses == [Status.REFUSED, Status.SETTLED, Status.FAILED, Status.SETTLED]
    assert [r.settled for r in results] == [False, True, False, True]
    assert [d.message_id for d, _ in settled] == ["m-1", "m-3"]


def test_no_record_starts_without_time_for_it(app: App) -> None:
    settled = Settled()
    left = iter([5.0, 1.5])
    results = run_batch(
        app,
        "test",
        [record(app, 1), record(app, 2), record(app, 3)],
        time_left=lambda: next(left),
        margin=1.0,
        start_above=2.0,
        settle=settled,
    )
    assert [r.status for r in results] == [Status.SETTLED, Status.NOT_STARTED, Status.NOT_STARTED]
    assert len(settled) == 1


def test_a_record_the_platform_holds_is_not_settled_and_stops_its_fifo_batch(app: App) -> None:
    settled = Settled()
    later = app.clock.now() + timedelta(hours=1)
    batch = [record(app, 1, "q.fifo", eta=later), record(app, 2, "q.fifo")]
    results = run_batch(app, "test", batch, platform_holds=True, settle=settled)
    assert [r.status for r in results] == [Status.HELD, Status.NOT_STARTED]
    assert isinstance(results[0].outcome, Defer)
    assert settled == [], "the platform holds it: settle() must not"


def test_the_time_limit_is_the_time_left_less_the_margin_and_at_most_the_cap() -> None:
    from cloudq.serverless import _time_limit

    assert _time_limit(10.0, 1.0, None) == 9.0
    assert _time_limit(10.0, 1.0, 3.0) == 3.0
    assert _time_limit(None, 1.0, 3.0) == 3.0
    assert _time_limit(0.5, 1.0, None) == 0.0
    assert _time_limit(None, 1.0, None) is None
