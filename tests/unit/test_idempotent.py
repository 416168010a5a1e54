"""``@app.task(idempotent=True)`` on the memory broker and backend with a fake clock."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest

from cloudq import App, State
from cloudq.adapters.base import Delivery
from cloudq.errors import ConfigurationError
from cloudq.execute import execute
from cloudq.idempotency import CLAIM_GRACE_SECONDS, CLAIM_SLACK_SECONDS, claim_key, release_for
from cloudq.outcome import Ack, Defer, RetryAt
from cloudq.results.memory import MemoryBackend
from cloudq.settle import settle
from cloudq.testing import FakeClock, process_one


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> App:
    name = uuid.uuid4().hex
    return App("t", broker=f"memory://{name}", backend=f"memory://{name}", clock=clock)


def receive(app: App, queue: str = "default") -> Delivery:
    [delivery] = app.broker.receive(queue, 1, 0, app.conf.queue_lease_seconds)
    return delivery


def queue_empty(app: App, queue: str = "default") -> bool:
    stats = app.broker.stats(queue)
    return not (stats.visible or stats.in_flight or stats.delayed)


def test_duplicate_delivery_after_success_is_acked_and_not_run(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []

    @app.task(idempotent=True)
    def charge(order: int) -> int:
        ran.append(order)
        return order * 10

    charge.apply_async((7,), task_id="order-7")
    charge.apply_async((7,), task_id="order-7")  # the broker's duplicate, or a second send
    assert isinstance(process_one(app), Ack)
    with caplog.at_level(logging.INFO, logger="cloudq.idempotency"):
        outcome = process_one(app)
    assert outcome == Ack(), "a skipped duplicate stores nothing new"
    assert ran == [7]
    assert "skipped duplicate delivery of" in caplog.text and "[order-7]" in caplog.text
    assert "already succeeded" in caplog.text
    assert app.AsyncResult("order-7").get(timeout=1) == 70
    assert queue_empty(app)


def test_crash_after_the_result_was_stored_does_not_run_again(app: App, clock: FakeClock) -> None:
    """The worker died between storing the result and acknowledging: the redelivery is skipped."""
    ran: list[int] = []

    @app.task(idempotent=True, time_limit=30)
    def once() -> None:
        ran.append(1)

    once.delay()
    first = receive(app)
    outcome = execute(first, app)
    assert isinstance(outcome, Ack) and outcome.result is not None
    app.backend.store(outcome.result, None)  # type: ignore[union-attr]  # ...then the crash
    clock.advance(app.conf.queue_lease_seconds + 1)  # the lease lapses: redelivered
    assert process_one(app) == Ack()
    assert ran == [1]
    assert queue_empty(app)


def test_concurrent_duplicate_is_deferred_then_skipped(app: App, clock: FakeClock) -> None:
    entered, leave = threading.Event(), threading.Event()
    ran: list[str] = []

    @app.task(idempotent=True, time_limit=20)
    def slow(tag: str) -> str:
        ran.append(tag)
        entered.set()
        assert leave.wait(10)
        return tag

    slow.apply_async(("a",), task_id="same")
    slow.apply_async(("a",), task_id="same")
    first, second = app.broker.receive("default", 2, 0, 60)
    outcomes: list[Any] = []

    def run_first() -> None:
        out = execute(first, app)
        settle(app, first, out)
        outcomes.append(out)

    t = threading.Thread(target=run_first)
    t.start()
    assert entered.wait(10)
    now = clock.now()
    deferred = execute(second, app)  # the other delivery, while the first still runs
    assert isinstance(deferred, Defer)
    assert deferred.until == now + timedelta(seconds=20 + CLAIM_GRACE_SECONDS + CLAIM_SLACK_SECONDS)
    settle(app, second, deferred)
    leave.set()
    t.join(10)
    assert isinstance(outcomes[0], Ack) and ran == ["a"]
    assert process_one(app) is None, "deferred, not due yet"
    clock.advance(20 + CLAIM_GRACE_SECONDS + CLAIM_SLACK_SECONDS)
    assert process_one(app) == Ack(), "by then it finds the success and is skipped"
    assert ran == ["a"]
    assert queue_empty(app)


def test_a_crashed_execution_runs_again_once_its_claim_lapses(app: App, clock: FakeClock) -> None:
    """A worker died mid-task (claim held, no result): the redelivery waits out the claim."""
    ran: list[int] = []

    @app.task(idempotent=True, time_limit=10)
    def work() -> int:
        ran.append(1)
        return 1

    result = work.delay()
    assert app.backend.claim(claim_key(result.id), 12)  # type: ignore[union-attr]  # the dead one
    outcome = process_one(app)
    assert isinstance(outcome, Defer)
    assert ran == []
    clock.advance(10 + CLAIM_GRACE_SECONDS + CLAIM_SLACK_SECONDS)
    assert isinstance(process_one(app), Ack)
    assert ran == [1]
    assert result.get(timeout=1) == 1


def test_failure_releases_the_claim_so_the_retry_runs_on_time(app: App, clock: FakeClock) -> None:
    calls: list[int] = []

    @app.task(idempotent=True, autoretry_for=(ConnectionError,), retry_backoff=1, time_limit=60)
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("down")
        return "ok"

    result = flaky.delay()
    assert isinstance(process_one(app), RetryAt)
    assert app.backend.claim(claim_key(result.id), 1)  # type: ignore[union-attr]  # it was free
    app.backend.unclaim(claim_key(result.id))  # type: ignore[union-attr]
    clock.advance(1)  # the backoff, far shorter than the claim's 62 s
    assert isinstance(process_one(app), Ack)
    assert len(calls) == 2
    assert result.get(timeout=1) == "ok"


def test_self_retry_releases_the_claim(app: App, clock: FakeClock) -> None:
    attempts: list[int] = []

    @app.task(idempotent=True, bind=True, max_retries=2)
    def polite(self: Any) -> int:
        attempts.append(self.request.attempt)
        if self.request.attempt == 1:
            self.retry(countdown=2)
        return self.request.attempt

    result = polite.delay()
    assert isinstance(process_one(app), RetryAt)
    clock.advance(2)
    assert isinstance(process_one(app), Ack)
    assert attempts == [1, 2]
    assert result.get(timeout=1) == 2


def test_a_killed_pool_child_gives_the_claim_back(app: App) -> None:
    @app.task(idempotent=True)
    def job() -> None: ...

    backend = app.backend
    assert isinstance(backend, MemoryBackend)
    assert backend.claim(claim_key("x"), 60)
    release_for(app, job, "x")
    assert backend.claim(claim_key("x"), 60), "released"
    release_for(app, None, "x")  # unknown task: nothing to do
    assert not backend.claim(claim_key("x"), 60)


def test_idempotency_key_dedupes_by_business_key(app: App) -> None:
    charged: list[tuple[int, float]] = []

    @app.task(idempotency_key=lambda order, amount: f"order-{order}")
    def charge(order: int, amount: float) -> None:
        charged.append((order, amount))

    a = charge.delay(1, 9.5)
    b = charge.delay(1, 9.5)  # a double click
    c = charge.delay(2, 3.0)
    assert a.id == b.id != c.id
    assert charge.apply_async((1, 9.5), task_id="explicit").id == "explicit"
    for _ in range(4):
        process_one(app)
    assert charged == [(1, 9.5), (2, 3.0), (1, 9.5)]  # "explicit" is another id
    assert queue_empty(app)


def test_tasks_that_do_not_opt_in_make_no_store_calls(app: App) -> None:
    calls: list[str] = []
    backend = app.backend
    assert isinstance(backend, MemoryBackend)
    for name in ("get", "claim", "unclaim"):
        original = getattr(backend, name)

        def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return _original(*args)

        setattr(backend, name, spy)

    @app.task
    def plain() -> int:
        return 1

    @app.task(autoretry_for=(ValueError,), max_retries=1)
    def failing() -> None:
        raise ValueError("x")

    plain.delay()
    failing.delay()
    process_one(app)
    process_one(app)
    assert calls == []


def test_apply_always_runs(app: App) -> None:
    ran: list[int] = []

    @app.task(idempotent=True)
    def here() -> int:
        ran.append(1)
        return 1

    here.apply(task_id="t1")
    assert here.apply(task_id="t1").get() == 1
    assert ran == [1, 1]


def test_skipped_duplicate_still_sends_its_chain_link(app: App) -> None:
    """The first delivery stored its success but may have crashed before sending the link:
    the skipped duplicate sends it from the stored result, so the chain never stops there."""
    got: list[int] = []

    @app.task(idempotent=True)
    def first() -> int:
        return 5

    @app.task
    def after(x: int) -> None:
        got.append(x)

    sig = first.s()
    sig.link(after.s())
    result = sig.apply_async(task_id="f1")
    sig.apply_async(task_id="f1")
    for _ in range(4):
        process_one(app)
    assert got == [5, 5]
    assert app.backend.get(result.id).state == State.SUCCESS  # type: ignore[union-attr]


def test_idempotent_without_a_result_backend_is_refused_at_declaration() -> None:
    app = App("t", broker=f"memory://{uuid.uuid4().hex}")
    with pytest.raises(ConfigurationError, match="result_backend") as info:

        @app.task(idempotent=True)
        def charge() -> None: ...

    assert "idempotent=True" in str(info.value) and "charge" in str(info.value)
    with pytest.raises(ConfigurationError, match="result_backend"):

        @app.task(idempotency_key=lambda: "k")
        def other() -> None: ...

    refused = [name for name in app.tasks if name.endswith((".charge", ".other"))]
    assert not refused, "a refused declaration registers nothing"


def test_idempotent_with_ignore_result_or_a_bad_key_is_refused(app: App) -> None:
    with pytest.raises(ConfigurationError, match="ignore_result"):

        @app.task(idempotent=True, ignore_result=True)
        def quiet() -> None: ...

    with pytest.raises(ConfigurationError, match="idempotency_key takes a function"):

        @app.task(idempotency_key="order")
        def keyed() -> None: ...


def test_memory_claims_lapse_after_their_ttl(clock: FakeClock) -> None:
    store = MemoryBackend(clock)
    assert store.claim("k", 5)
    assert not store.claim("k", 5)
    clock.advance(4.9)
    assert not store.claim("k", 5)
    clock.advance(0.1)
    assert store.claim("k", 5)
