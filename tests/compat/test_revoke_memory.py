"""Celery's revoke on the memory broker and backend: a revoked task never runs, wherever it
waits (queued, delayed, hopping, retrying, rate-deferred), is acknowledged with state REVOKED,
stops its chain (errbacks still run) and fails its chord; workers learn revoked ids on their
heartbeat, not per task."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cloudq import App, chain, chord
from cloudq.clock import FakeClock
from cloudq.errors import ConfigurationError, TaskRevokedError
from cloudq.outcome import Ack
from cloudq.results.base import State
from cloudq.revoke import refresh
from cloudq.testing import process_one, wait_for
from cloudq.worker import Worker

HEARTBEAT = 0.1


def _apps(clock: FakeClock, **settings: Any) -> tuple[App, App]:
    """A producer and a worker app on one memory broker and backend: the worker's app learns
    revoked ids only from the store, as another process would."""
    url = f"memory://revoke-{uuid.uuid4().hex}"
    producer = App("p", broker=url, backend=url, clock=clock, **settings)
    consumer = App("c", broker=url, backend=url, clock=clock, **settings)
    return producer, consumer


def _register(app: App, ran: list[str]) -> dict[str, Any]:
    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        ran.append(f"add({x}, {y})")
        return x + y

    @app.task(name="t.mul")
    def mul(x: int, y: int) -> int:
        ran.append(f"mul({x}, {y})")
        return x * y

    @app.task(name="t.errback")
    def errback(task_id: str) -> None:
        ran.append(f"errback({task_id})")

    @app.task(name="t.tsum")
    def tsum(values: list[int]) -> int:
        ran.append("tsum")
        return sum(values)

    @app.task(name="t.flaky", autoretry_for=(ConnectionError,), max_retries=3, retry_backoff=10)
    def flaky() -> None:
        ran.append("flaky")
        raise ConnectionError("down")

    @app.task(name="t.limited", rate_limit="1/m")
    def limited(n: int) -> int:
        ran.append(f"limited({n})")
        return n

    return {
        "add": add,
        "mul": mul,
        "errback": errback,
        "tsum": tsum,
        "flaky": flaky,
        "limited": limited,
    }


@contextmanager
def _worker(app: App) -> Iterator[Worker]:
    worker = Worker(app, ["default"], concurrency=2, poll_seconds=0.05, heartbeat_seconds=HEARTBEAT)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.hostname in app.backend.control_workers(), timeout=10)  # type: ignore[union-attr]
        yield worker
    finally:
        worker.stop()
        thread.join(30)


def _drained(app: App) -> bool:
    stats = app.broker.stats("default")
    return stats.visible == 0 and stats.in_flight == 0 and stats.delayed == 0


def test_revoke_without_a_store_names_result_backend() -> None:
    app = App("n", broker=f"memory://{uuid.uuid4().hex}")
    with pytest.raises(ConfigurationError, match="result_backend"):
        app.control.revoke(str(uuid.uuid4()))
    with pytest.raises(ConfigurationError, match="result_backend"):
        app.AsyncResult(str(uuid.uuid4())).revoke()


def test_revoke_refuses_no_ids() -> None:
    app = App("n", broker="memory://x", backend=f"memory://{uuid.uuid4().hex}")
    with pytest.raises(ConfigurationError, match="task ids"):
        app.control.revoke([])


def test_a_revoked_countdown_task_never_runs_on_a_worker() -> None:
    clock = FakeClock()
    producer, consumer = _apps(clock)
    ran: list[str] = []
    tasks = _register(producer, ran)
    _register(consumer, ran)
    consumer.ensure_queue("default")
    with _worker(consumer):
        result = tasks["add"].apply_async((1, 2), countdown=60)
        result.revoke()
        # The worker's app learns it from the store on a heartbeat, not from this process.
        wait_for(lambda: result.id in consumer.control.revoked, timeout=10, message="refresh")
        clock.advance(61)
        with pytest.raises(TaskRevokedError):
            result.get(timeout=10)
        wait_for(lambda: _drained(consumer), timeout=10, message="acknowledged")
        control_check = tasks["add"].delay(3, 4)  # the worker still runs what is not revoked
        assert control_check.get(timeout=10) == 7
    assert ran == ["add(3, 4)"]
    assert result.state == State.REVOKED
    assert consumer.broker.stats("default").dead_lettered == 0


def test_a_worker_sees_a_revoke_only_on_its_heartbeat() -> None:
    """The check costs no store call per task: until the refresh, this process does not know."""
    clock = FakeClock()
    producer, consumer = _apps(clock)
    task_id = str(uuid.uuid4())
    producer.control.revoke(task_id)
    assert task_id in producer.control.revoked  # the revoking process knows at once
    assert task_id not in consumer.control.revoked
    assert refresh(consumer) is True
    assert task_id in consumer.control.revoked
    clock.advance(producer.conf.result_expires + 1)  # revoked ids live for result_expires
    refresh(consumer)
    assert task_id not in consumer.control.revoked


def test_a_hopping_delay_is_acknowledged_at_its_next_hop_and_hops_no_more() -> None:
    clock = FakeClock()
    url = f"memory://revoke-{uuid.uuid4().hex}?max_delay_seconds=900"
    app = App("h", broker=url, backend=f"memory://{uuid.uuid4().hex}", clock=clock)
    ran: list[str] = []
    tasks = _register(app, ran)
    app.ensure_queue("default")
    result = tasks["add"].apply_async((1, 1), countdown=2000)
    clock.advance(901)
    hop = process_one(app)
    assert hop is not None and not isinstance(hop, Ack)  # re-sent as the next hop
    result.revoke()
    clock.advance(901)
    outcome = process_one(app)
    assert isinstance(outcome, Ack) and outcome.result is not None
    assert outcome.result.state == State.REVOKED
    clock.advance(3000)
    assert process_one(app) is None, "no hop left"
    assert ran == []
    with pytest.raises(TaskRevokedError):
        result.get(timeout=1)


def test_a_retrying_task_revoked_between_attempts_is_not_run_again() -> None:
    clock = FakeClock()
    app = App(
        "r",
        broker=f"memory://{uuid.uuid4().hex}",
        backend=f"memory://{uuid.uuid4().hex}",
        clock=clock,
    )
    ran: list[str] = []
    tasks = _register(app, ran)
    app.ensure_queue("default")
    result = tasks["flaky"].delay()
    process_one(app)
    assert ran == ["flaky"] and result.state == State.RETRY
    result.revoke()
    clock.advance(11)
    outcome = process_one(app)
    assert isinstance(outcome, Ack)
    assert ran == ["flaky"]
    assert result.state == State.REVOKED
    assert app.broker.stats("default").dead_lettered == 0


def test_a_rate_deferred_task_revoked_while_it_waits_never_runs() -> None:
    clock = FakeClock()
    app = App(
        "l",
        broker=f"memory://{uuid.uuid4().hex}",
        backend=f"memory://{uuid.uuid4().hex}",
        clock=clock,
    )
    ran: list[str] = []
    tasks = _register(app, ran)
    app.ensure_queue("default")
    tasks["limited"].delay(1)
    second = tasks["limited"].delay(2)
    process_one(app)
    process_one(app)  # over the rate: deferred to the next slot
    assert ran == ["limited(1)"]
    second.revoke()
    clock.advance(61)
    assert isinstance(process_one(app), Ack)
    assert ran == ["limited(1)"]
    assert second.state == State.REVOKED


def test_a_revoked_chain_link_stops_the_chain_and_runs_its_errback() -> None:
    clock = FakeClock()
    app = App(
        "c",
        broker=f"memory://{uuid.uuid4().hex}",
        backend=f"memory://{uuid.uuid4().hex}",
        clock=clock,
    )
    ran: list[str] = []
    tasks = _register(app, ran)
    app.ensure_queue("default")
    first = tasks["add"].s(1, 2)
    first.link_error(tasks["errback"].s())
    chain(first, tasks["mul"].s(10)).delay()
    # The first link's id: the only message queued now.
    [delivery] = app.broker.receive("default", 1, 0, 30)
    app.broker.release([delivery], 0)
    from cloudq.envelope import decode

    first_id = decode(delivery.body).id
    app.control.revoke(first_id)
    while process_one(app) is not None:
        pass
    assert ran == [f"errback({first_id})"], "mul never runs; the errback does"
    assert app.AsyncResult(first_id).state == State.REVOKED


def test_a_revoked_chord_header_fails_the_chord() -> None:
    clock = FakeClock()
    app = App(
        "d",
        broker=f"memory://{uuid.uuid4().hex}",
        backend=f"memory://{uuid.uuid4().hex}",
        clock=clock,
    )
    ran: list[str] = []
    tasks = _register(app, ran)
    app.ensure_queue("default")
    body = tasks["tsum"].s()
    body.link_error(tasks["errback"].s())
    headers = [tasks["add"].s(i, i) for i in range(3)]
    chord(headers)(body)
    queued = app.broker.receive("default", 10, 0, 30)
    app.broker.release(queued, 0)
    from cloudq.envelope import decode

    revoked_id = decode(queued[1].body).id
    app.control.revoke(revoked_id)
    while process_one(app) is not None:
        pass
    assert "tsum" not in ran, "the body never runs"
    assert ran.count(f"errback({revoked_id})") == 1, ran
    assert len([r for r in ran if r.startswith("add")]) == 2


def test_a_store_outage_on_refresh_keeps_the_ids_known(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    producer, consumer = _apps(clock)
    task_id = str(uuid.uuid4())
    producer.control.revoke(task_id)
    refresh(consumer)

    def down() -> list[str]:
        raise ConnectionError("store down")

    monkeypatch.setattr(consumer.backend, "revoke_list", down)
    assert refresh(consumer) is False
    assert task_id in consumer.control.revoked
