"""A parked (claim-checked) body is deleted only once its ack succeeded (issue 26, finding 6).

Deleted when the worker's batching ack was only queued, a failed ack (or a SIGKILL before the
flush) turned the redelivery into a false "claim-check body missing" dead letter.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import Delivery
from cloudq.claimcheck import MemoryClaimCheckStore, pointer_url
from cloudq.errors import BrokerError
from cloudq.execute import execute
from cloudq.outcome import Ack
from cloudq.settle import settle
from cloudq.worker import _Acker

LEASE = 300.0
"""Long enough that the worker's acker queues the ack (it acks at once late in a lease)."""


@pytest.fixture
def app() -> Iterator[App]:
    name = uuid.uuid4().hex
    app = App(
        "parked",
        broker_url=f"memory://{name}?max_message_bytes=2000",
        result_backend=f"memory://{name}",
        claim_check_url=f"memory://cc-{name}",
    )

    @app.task(name="parked.size")
    def size(blob: str) -> int:
        return len(blob)

    yield app
    app.close()


def parked(app: App) -> tuple[Delivery, str]:
    app.tasks["parked.size"].delay("x" * 5_000)
    [delivery] = app.broker.receive("default", 1, 0, LEASE)
    url = pointer_url(delivery.body)
    assert url is not None, "the body was parked"
    return delivery, url


def objects(app: App) -> dict[str, bytes]:
    store = app.claim_checks
    assert isinstance(store, MemoryClaimCheckStore)
    return store.objects


def failing_ack(*_: Any) -> None:
    raise BrokerError("ack failed")


def test_the_workers_queued_ack_deletes_the_body_only_after_the_ack(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    acker = _Acker(app, LEASE)
    delivery, url = parked(app)
    settle(app, delivery, execute(delivery, app), ack=acker)
    assert url in objects(app), "deleted while the ack was only queued"

    real = app.broker.ack
    monkeypatch.setattr(app.broker, "ack", failing_ack)
    acker.flush()  # logged, not raised: the message comes back
    assert url in objects(app), "deleted although the ack failed"

    monkeypatch.setattr(app.broker, "ack", real)
    app.broker.release([delivery], 0)  # its lease ends: redelivered
    [again] = app.broker.receive("default", 1, 0, LEASE)
    outcome = execute(again, app)
    assert isinstance(outcome, Ack) and outcome.result is not None
    assert outcome.result.result == 5_000, "the redelivery runs, no 'body missing'"
    settle(app, again, outcome, ack=acker)
    acker.flush()
    assert url not in objects(app), "deleted once acked"
    assert app.broker.stats("default").in_flight == 0


def test_an_ack_function_counts_as_done_when_it_returns(app: App) -> None:
    """A plain ``ack`` (a serverless handler's, whose platform acks) keeps today's behaviour;
    one that raises keeps the body."""
    delivery, url = parked(app)
    outcome = execute(delivery, app)
    with pytest.raises(BrokerError):
        settle(app, delivery, outcome, ack=failing_ack)
    assert url in objects(app)

    acked: list[Delivery] = []
    settle(app, delivery, outcome, ack=acked.append)
    assert acked == [delivery] and url not in objects(app)


def test_a_queued_ack_of_a_handler_drops_the_body_when_it_says_so(app: App) -> None:
    """How a handler deletes after its platform's ack: pass a ``QueuedAck``, then call
    ``cloudq.claimcheck.drop_parked`` once the platform acked."""
    from cloudq.claimcheck import drop_parked
    from cloudq.settle import QueuedAck

    class Later:
        drops_parked = True

        def __init__(self) -> None:
            self.done: list[Delivery] = []

        def __call__(self, delivery: Delivery) -> None:
            self.done.append(delivery)

    later = Later()
    assert isinstance(later, QueuedAck)
    delivery, url = parked(app)
    settle(app, delivery, execute(delivery, app), ack=later)
    assert url in objects(app)
    done: Sequence[Delivery] = later.done
    drop_parked(app, done)
    assert url not in objects(app)
