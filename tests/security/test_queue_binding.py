"""Issue 26, finding 7: with signing on, a message runs only on the queue it was signed for.

The signature covers ``env.queue``; ``execute`` never compared it with the queue the message
arrived on, so a captured message could be re-sent to any queue (a privileged queue's worker,
a queue with other rate limits). And what the library itself sends (retries, delay hops,
rate-limit deferrals, FIFO holds, eager ``apply()``) keeps the two equal, so nothing
legitimate is refused.
"""

from __future__ import annotations

import uuid
from typing import Any

from cloudq import App
from cloudq.adapters.base import Delivery
from cloudq.execute import execute
from cloudq.outcome import Ack, DeadLetter, Defer, RetryAt
from cloudq.testing import FakeClock, process_one

KEY = "k1"


def make_app(signed: bool = True, query: str = "") -> App:
    name = uuid.uuid4().hex
    return App(
        "t",
        broker=f"memory://{name}{query}",
        backend=f"memory://{name}",
        clock=FakeClock(),
        signing_keys=[KEY] if signed else [],
    )


def captured(app: App, queue: str) -> bytes:
    """The signed body of a message sent to ``queue``, as an attacker would capture it."""
    (delivery,) = app.broker.receive(queue, 1, 0, 30)
    return delivery.body


def test_a_signed_message_re_sent_to_another_queue_is_dead_lettered() -> None:
    app = make_app()
    ran: list[int] = []

    @app.task(name="pay")
    def pay(amount: int) -> None:
        ran.append(amount)

    pay.apply_async((100,), queue="billing")
    body = captured(app, "billing")
    outcome = execute(Delivery("default", body, "m-1", 1), app)
    assert isinstance(outcome, DeadLetter), outcome
    assert "'billing'" in outcome.reason and "'default'" in outcome.reason
    assert "another queue" in outcome.reason
    assert ran == []
    # On the queue it was signed for, it runs.
    assert isinstance(execute(Delivery("billing", body, "m-1", 1), app), Ack)
    assert ran == [100]


def test_without_signing_the_queue_is_not_checked() -> None:
    """Unsigned messages can be rewritten at will: checking their queue would protect nothing
    and would refuse messages moved between queues on purpose (a manual redrive)."""
    app = make_app(signed=False)

    @app.task(name="ok")
    def ok() -> int:
        return 1

    ok.apply_async((), queue="elsewhere")
    body = captured(app, "elsewhere")
    assert isinstance(execute(Delivery("default", body, "m-1", 1), app), Ack)


def test_retries_delay_hops_and_rate_deferrals_keep_their_queue() -> None:
    app = make_app(query="?max_delay_seconds=5")
    clock = app.clock
    assert isinstance(clock, FakeClock)
    calls: list[int] = []

    @app.task(name="flaky", bind=True, autoretry_for=(ConnectionError,), retry_backoff=20)
    def flaky(self: Any) -> int:
        calls.append(self.request.attempt)
        if self.request.attempt < 3:
            raise ConnectionError("down")
        return 1

    @app.task(name="limited", rate_limit="1/m")
    def limited() -> None: ...

    result = flaky.apply_async((), queue="work")
    limited.apply_async((), queue="work")
    limited.apply_async((), queue="work")
    seen: list[Any] = []
    for _ in range(200):
        outcome = process_one(app, "work")
        if outcome is None:
            clock.advance(1)
            continue
        seen.append(outcome)
        assert not isinstance(outcome, DeadLetter), outcome
        if calls[-1:] == [3] and sum(isinstance(o, Ack) for o in seen) == 3:
            break
    assert calls == [1, 2, 3]
    assert result.get(timeout=0) == 1
    assert any(isinstance(o, RetryAt) for o in seen)
    assert any(isinstance(o, Defer) for o in seen), "the 20 s backoff hops through a 5 s delay"
    assert app.broker.stats("work").dead_lettered == 0


def test_fifo_holds_keep_their_queue() -> None:
    app = make_app()
    clock = app.clock
    assert isinstance(clock, FakeClock)

    @app.task(name="step")
    def step(n: int) -> int:
        return n

    step.apply_async((1,), queue="orders.fifo", countdown=3)
    outcomes: list[Any] = []
    for _ in range(10):
        outcome = process_one(app, "orders.fifo")
        clock.advance(1)
        if outcome is not None:
            outcomes.append(outcome)
        if any(isinstance(o, Ack) for o in outcomes):
            break
    assert isinstance(outcomes[0], Defer)
    assert isinstance(outcomes[-1], Ack), outcomes
    assert app.broker.stats("orders.fifo").dead_lettered == 0


def test_eager_apply_with_retries_runs_on_its_own_queue() -> None:
    app = make_app()

    @app.task(name="flaky", bind=True, queue="special", autoretry_for=(ConnectionError,))
    def flaky(self: Any) -> int:
        if self.request.attempt < 2:
            raise ConnectionError("down")
        return int(self.request.attempt)

    assert flaky.apply().get() == 2
