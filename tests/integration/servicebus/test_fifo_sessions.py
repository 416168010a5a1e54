"""FIFO on Service Bus: ``.fifo`` queues are session queues, a group is a session. The same
checks as SQS's FIFO test (order per group, retry to the back of the group, a countdown held)
and Pub/Sub's (groups in order on the broker), and a group held back blocks itself only."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from cloudq import App
from cloudq.adapters.base import OutgoingMessage, QueueSpec
from cloudq.adapters.wire import dead_letter_queue_name
from cloudq.testing import start_worker, wait_for
from cloudq_servicebus.broker import ServiceBusBroker
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint
from tests.integration.scenarios import fifo_group_order_retry_and_countdown

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def make_app() -> App:
    return App(
        "fifo",
        broker=f"servicebus://?prefix=f{uuid.uuid4().hex[:8]}-",
        backend=f"memory://{uuid.uuid4().hex}",
        queue_lease_seconds=5,
    )


def test_fifo_queue_is_a_session_queue_and_groups_come_in_order(
    servicebus_env: ServiceBusEndpoint,
) -> None:
    app = make_app()
    broker = app.broker
    assert isinstance(broker, ServiceBusBroker)
    try:
        broker.ensure(QueueSpec("orders.fifo", fifo=True))
        assert broker._admin.get_queue(broker.physical_name("orders.fifo")).requires_session
        dlq = broker.physical_name(dead_letter_queue_name("orders.fifo"))
        assert not broker._admin.get_queue(dlq).requires_session
        broker.send(
            "orders.fifo",
            [OutgoingMessage(f"{g}{i}".encode(), group=g) for i in range(3) for g in ("a", "b")],
        )
        broker.send("orders.fifo", [OutgoingMessage(b"plain")])
        by_group: dict[str | None, list[bytes]] = {}

        def drained() -> bool:
            got = broker.receive("orders.fifo", 10, 1, 30)
            for d in got:
                by_group.setdefault(d.group, []).append(d.body)
            broker.ack(got)
            return sum(map(len, by_group.values())) >= 7

        wait_for(drained, timeout=20, message="all 7 messages")
        assert by_group == {
            "a": [b"a0", b"a1", b"a2"],
            "b": [b"b0", b"b1", b"b2"],
            "default": [b"plain"],
        }
    finally:
        app.close()


def test_fifo_group_order_retry_and_countdown(servicebus_env: ServiceBusEndpoint) -> None:
    """SQS's FIFO test, without the re-send (the endpoint has no duplicate detection)."""
    app = make_app()
    try:
        fifo_group_order_retry_and_countdown(app)
    finally:
        app.close()


COUNTDOWN = 5.0
"""The held message's countdown: long enough for the other group's three on a loaded machine."""


def test_a_held_message_blocks_its_group_only(servicebus_env: ServiceBusEndpoint) -> None:
    app = make_app()
    ran: list[tuple[str, int, float]] = []
    lock = threading.Lock()

    @app.task(name="step", queue="jobs.fifo", fifo_group=lambda group, n: group)
    def step(group: str, n: int) -> None:
        with lock:
            ran.append((group, n, time.monotonic()))

    try:
        app.ensure_queue("jobs.fifo")
        # The worker first, then the sends: its start-up on a busy machine must not eat into
        # the countdown that the other group is meant to finish within.
        with start_worker(app, ["jobs.fifo"], concurrency=4, poll_seconds=1):
            sent = time.monotonic()
            step.apply_async(("slow", 0), countdown=COUNTDOWN)  # held until due: its group waits
            for n in range(1, 4):
                step.delay("slow", n)
                step.delay("fast", n)
            wait_for(lambda: len(ran) == 7, timeout=30, message="all ran")
        slow = [(n, at) for g, n, at in ran if g == "slow"]
        fast = [(n, at) for g, n, at in ran if g == "fast"]
        assert [n for n, _ in slow] == [0, 1, 2, 3], "the group kept its order"
        assert slow[0][1] - sent >= COUNTDOWN - 0.05, "the countdown was kept"
        assert [n for n, _ in fast] == [1, 2, 3]
        assert fast[-1][1] < slow[0][1], "the other group did not wait for the held one"
    finally:
        app.close()


def test_functions_handler_in_session_mode_stops_at_the_first_held_message(
    servicebus_env: ServiceBusEndpoint,
) -> None:
    from azure.servicebus import ServiceBusClient

    from cloudq_servicebus.functions import BatchFailed, functions_handler
    from tests.integration.servicebus.test_servicebus_adapter import _as_trigger

    app = make_app()
    ran: list[int] = []

    @app.task(name="step", queue="jobs.fifo", fifo_group="g")
    def step(n: int) -> None:
        ran.append(n)

    try:
        app.ensure_queue("jobs.fifo")
        step.delay(0)
        step.apply_async((1,), countdown=60)  # due later: keeps its place, the batch stops
        step.delay(2)
        name = app.broker.physical_name("jobs.fifo")  # type: ignore[attr-defined]
        with (
            ServiceBusClient.from_connection_string(servicebus_env.connection) as client,
            client.get_queue_receiver(name, session_id="g", max_wait_time=2) as receiver,
        ):
            got: list[object] = []
            wait_for(
                lambda: (
                    got.extend(receiver.receive_messages(3 - len(got), max_wait_time=1))
                    or len(got) == 3
                ),
                timeout=10,
                message="the session's 3 messages",
            )
            handler = functions_handler(app, "jobs.fifo")
            with pytest.raises(BatchFailed, match="2 of 3"):
                handler([_as_trigger(m) for m in got])
            for m in got:
                receiver.abandon_message(m)  # the host abandons the batch
        assert ran == [0], "nothing after the held message ran"
        assert app.broker.stats("jobs.fifo").delayed == 0, "no copy was scheduled"
    finally:
        app.close()


def test_purge_empties_every_session(servicebus_env: ServiceBusEndpoint) -> None:
    app = make_app()
    broker = app.broker
    try:
        broker.ensure(QueueSpec("purged.fifo", fifo=True))
        broker.send(
            "purged.fifo",
            [OutgoingMessage(f"{g}{i}".encode(), group=g) for i in range(2) for g in "abc"],
        )
        broker.send("purged.fifo", [OutgoingMessage(b"later", group="a", delay_seconds=600)])
        before = broker.stats("purged.fifo")
        assert (before.visible, before.delayed) == (6, 1), before
        broker.purge("purged.fifo")
        stats = broker.stats("purged.fifo")
        assert (stats.visible, stats.delayed) == (0, 0), stats
        assert broker.receive("purged.fifo", 10, 1, 30) == []
    finally:
        app.close()
