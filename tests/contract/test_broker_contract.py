"""The adapter contract, written once, run against every adapter.

Each adapter is a ``broker_factory`` fixture: ``memory`` here, the real endpoints (moto SQS,
LocalStack's SQS, the Pub/Sub emulator, the Service Bus test endpoint) by name from their fixture
modules. Real time, short leases and delays, and waits on conditions: the same test holds for
every provider.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from cloudq.adapters.base import Broker, Delivery, OutgoingMessage, QueueSpec
from cloudq.adapters.memory import open_memory_broker
from cloudq.clock import SystemClock
from cloudq.testing import wait_for

BrokerFactory = Callable[[], Broker]

# adapter name -> fixture giving a BrokerFactory (registered by tests/conftest.py plugins).
ADAPTER_FIXTURES = {
    "memory": "memory_broker_factory",
    "sqs": "sqs_broker_factory",
    "sqs-localstack": "localstack_sqs_broker_factory",
    "pubsub": "pubsub_broker_factory",
    "servicebus": "servicebus_broker_factory",
}


@pytest.fixture
def memory_broker_factory() -> BrokerFactory:
    return lambda: open_memory_broker(f"memory://{uuid.uuid4().hex}", SystemClock())


@pytest.fixture(params=sorted(ADAPTER_FIXTURES))
def broker(request: pytest.FixtureRequest) -> Broker:
    factory: BrokerFactory = request.getfixturevalue(ADAPTER_FIXTURES[request.param])
    return factory()


@pytest.fixture
def queue(broker: Broker) -> str:
    name = f"c{uuid.uuid4().hex[:10]}"
    broker.ensure(QueueSpec(name, lease_seconds=30, max_receive_count=2))
    return name


def receive_until(
    broker: Broker, queue: str, count: int, lease: float = 30, timeout: float = 15
) -> list[Delivery]:
    """Receive until ``count`` messages came, never asking for more than are still missing."""
    got: list[Delivery] = []

    def enough() -> bool:
        want = min(count - len(got), broker.limits.max_batch)
        got.extend(broker.receive(queue, want, 1, lease))
        return len(got) >= count

    wait_for(enough, timeout=timeout, interval=0, message=f"{count} message(s) on {queue}")
    return got


def msgs(n: int, **kw: object) -> list[OutgoingMessage]:
    return [OutgoingMessage(body=f"m{i}".encode(), **kw) for i in range(n)]  # type: ignore[arg-type]


def test_send_receive_ack(broker: Broker, queue: str) -> None:
    broker.send(queue, msgs(broker.limits.max_batch))
    got = receive_until(broker, queue, broker.limits.max_batch)
    assert sorted(d.body for d in got) == sorted(m.body for m in msgs(broker.limits.max_batch))
    assert all(d.receive_count == 1 for d in got)
    broker.ack(got)
    stats = broker.stats(queue)
    if stats.visible is not None:  # None: the provider cannot count (Pub/Sub)
        assert (stats.visible, stats.in_flight) == (0, 0)
    assert broker.receive(queue, 10, 0, 30) == []


def test_delay_is_honoured(broker: Broker, queue: str) -> None:
    if broker.limits.max_delay_seconds == 0:
        pytest.skip("no native delay (Pub/Sub): the core holds messages due later instead")
    sent = time.monotonic()
    broker.send(queue, [OutgoingMessage(b"later", delay_seconds=2)])
    assert broker.receive(queue, 1, 0, 30) == []
    [d] = receive_until(broker, queue, 1)
    assert d.body == b"later"
    assert time.monotonic() - sent >= 1.9
    broker.ack([d])


def test_lease_expiry_redelivers_with_count(broker: Broker, queue: str) -> None:
    broker.send(queue, [OutgoingMessage(b"x")])
    [_first] = receive_until(broker, queue, 1, lease=1)
    [again] = receive_until(broker, queue, 1, lease=30)
    assert again.body == b"x" and again.receive_count == 2
    broker.ack([again])


def test_extend_keeps_a_message_invisible(broker: Broker, queue: str) -> None:
    broker.send(queue, [OutgoingMessage(b"x")])
    [d] = receive_until(broker, queue, 1, lease=1)
    before = time.monotonic()
    broker.extend([d], 4)
    # The worker schedules heartbeats from leased_until: the broker moves it, from no later
    # than the call began (never past the broker's own deadline).
    assert before <= d.leased_until - 4 <= time.monotonic()
    time.sleep(1.5)  # past the first lease: the message must still be hidden
    assert broker.receive(queue, 1, 0, 30) == []
    broker.ack([d])


def test_release_makes_visible_at_once(broker: Broker, queue: str) -> None:
    broker.send(queue, [OutgoingMessage(b"x")])
    [d] = receive_until(broker, queue, 1, lease=60)
    broker.release([d], 0)
    [again] = receive_until(broker, queue, 1, timeout=5)
    assert again.body == b"x"
    broker.ack([again])


def test_dead_letter_keeps_reason_and_body(broker: Broker, queue: str) -> None:
    broker.send(queue, [OutgoingMessage(b"orig")])
    [d] = receive_until(broker, queue, 1)
    broker.dead_letter(d, "ValueError: boom", b"replaced")
    [dead] = receive_until(broker, f"{queue}-dlq", 1)
    assert dead.body == b"replaced"
    assert dead.attributes["cloudq-dead-letter-reason"] == "ValueError: boom"
    assert broker.stats(queue).in_flight in (0, None)
    assert broker.receive(queue, 1, 0, 30) == []


def test_max_receive_count_moves_to_dead_letter_queue(broker: Broker, queue: str) -> None:
    broker.send(queue, [OutgoingMessage(b"poison")])
    receives: list[Delivery] = []
    dead: list[Delivery] = []

    def moved() -> bool:
        # Like SQS, the move happens when a consumer asks for the message once too often.
        receives.extend(broker.receive(queue, 1, 1, 1))
        dead.extend(broker.receive(f"{queue}-dlq", 1, 0, 30))
        return bool(dead)

    wait_for(moved, timeout=30, interval=0, message="poison message in the DLQ")
    assert [d.receive_count for d in receives] == [1, 2]  # max_receive_count=2
    assert dead[0].body == b"poison"


def test_stats_and_purge(broker: Broker, queue: str) -> None:
    native_delay = broker.limits.max_delay_seconds != 0
    delayed = [OutgoingMessage(b"d", delay_seconds=60)] if native_delay else []
    broker.send(queue, [*msgs(3), *delayed])
    [_held] = receive_until(broker, queue, 1)
    counted = broker.stats(queue).visible is not None  # False: the provider cannot count
    if counted:
        wait_for(lambda: broker.stats(queue).visible == 2, timeout=5, message="2 visible")
        stats = broker.stats(queue)
        assert (stats.in_flight, stats.delayed, stats.dead_lettered) == (1, len(delayed), 0)
    broker.purge(queue)
    if counted:
        wait_for(lambda: broker.stats(queue).visible == 0, timeout=5, message="purged")
    assert broker.receive(queue, 10, 1, 30) == []
