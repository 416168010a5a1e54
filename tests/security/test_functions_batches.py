"""Azure Functions with ``cardinality: many``: one message whose outcome cannot be applied costs
the batch nothing (issue 26, finding 5). Before, the function raised, the host abandoned the
whole batch and the good tasks ran again on every redelivery.

On the project's Service Bus test endpoint, settling as the host does (autoComplete): complete
every message when the function returns, abandon every one when it raises.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import OutgoingMessage
from cloudq.testing import wait_for
from cloudq_servicebus.broker import REASON_ATTRIBUTE, ServiceBusBroker
from cloudq_servicebus.functions import (
    REDELIVERY_ATTRIBUTE,
    BatchFailed,
    functions_handler,
    message_to_delivery,
)
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint
from tests.integration.servicebus.test_servicebus_adapter import _as_trigger, _receive_raw

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MAX_DELIVERIES = 3


Runs = dict[Any, Any]


@pytest.fixture
def runs() -> Runs:
    """How often each task ran: ok's by argument, stuck's delivery counts."""
    return {}


@pytest.fixture
def app(servicebus_env: ServiceBusEndpoint, runs: Runs) -> Iterator[App]:
    app = App(
        "batches",
        broker=f"servicebus://?prefix=b{uuid.uuid4().hex[:10]}-",
        backend=f"memory://{uuid.uuid4().hex}",
        queue_max_receive_count=MAX_DELIVERIES,
    )

    @app.task(name="ok")
    def ok(x: int) -> int:
        runs[x] = runs.get(x, 0) + 1
        return x * 2

    @app.task(name="stuck", bind=True, autoretry_for=(ConnectionError,), max_retries=5)
    def stuck(self: Any) -> None:
        runs.setdefault("stuck", []).append(self.request.delivery_count)
        raise ConnectionError("always")

    app.ensure_queue("default")
    app.conf.create_missing_queues = False  # the retry copy's queue "ghost" stays missing
    yield app
    app.close()


def batch(app: App) -> list[OutgoingMessage]:
    """ok(1), a task whose retry copy cannot be sent (its queue does not exist), ok(2)."""
    envelopes = [
        app.tasks["ok"].envelope((1,), {}),
        app.tasks["stuck"].envelope((), {}, queue="ghost"),
        app.tasks["ok"].envelope((2,), {}),
    ]
    return [OutgoingMessage(e.encode(), message_id=e.id) for e in envelopes]


def host_round(app: App, connection: str, handler: Any, count: int) -> bool:
    """One trigger of ``count`` messages, settled as the host does; whether the function raised."""
    receiver, messages = _receive_raw(app, connection, count, timeout=20)
    try:
        try:
            handler([_as_trigger(m) for m in messages])
        except BatchFailed:
            for m in messages:
                receiver.abandon_message(m)
            return True
        for m in messages:
            receiver.complete_message(m)
        return False
    finally:
        receiver.close()


def test_a_message_not_settled_costs_the_batch_nothing(
    app: App, servicebus_env: ServiceBusEndpoint, runs: Runs
) -> None:
    handler = functions_handler(app, queue="default")
    app.broker.send("default", batch(app))
    assert host_round(app, servicebus_env.connection, handler, 3) is False, "nothing abandoned"
    assert runs == {1: 1, 2: 1, "stuck": [1]}
    # The stuck one comes back alone, counted, until the queue's max delivery count.
    for _ in range(MAX_DELIVERIES - 1):
        assert host_round(app, servicebus_env.connection, handler, 1) is False
    assert runs == {1: 1, 2: 1, "stuck": [1, 2, 3]}
    dead: list[Any] = []
    wait_for(
        lambda: dead.extend(app.broker.receive("default-dlq", 10, 1, 30)) or dead,
        timeout=10,
        interval=0,
        message="the stuck message dead-lettered",
    )
    [letter] = dead
    assert b'"ghost"' in letter.body
    assert f"{MAX_DELIVERIES} deliveries" in letter.attributes[REASON_ATTRIBUTE]
    app.broker.ack(dead)
    assert app.broker.stats("default").visible == 0


def test_the_batch_is_abandoned_only_when_the_copy_cannot_be_sent_either(
    app: App, servicebus_env: ServiceBusEndpoint, runs: Runs
) -> None:
    from azure.servicebus.management import ServiceBusAdministrationClient

    assert isinstance(app.broker, ServiceBusBroker)
    handler = functions_handler(app, queue="default")
    # Sent by another client: the handler's broker must open its sender after the queue is gone
    # (the test endpoint does not detach a link that is open when its queue is deleted).
    producer = App("producer", broker=app.conf.broker_url)
    producer.broker.send("default", batch(app))
    producer.close()
    receiver, messages = _receive_raw(app, servicebus_env.connection, 3)
    admin = ServiceBusAdministrationClient.from_connection_string(
        servicebus_env.admin_connection or servicebus_env.connection
    )
    admin.delete_queue(app.broker.physical_name("default"))  # nowhere to send the copy to
    try:
        with pytest.raises(BatchFailed, match="1 of 3 message"):
            handler([_as_trigger(m) for m in messages])
    finally:
        receiver.close()
        admin.close()
    assert runs == {1: 1, 2: 1, "stuck": [1]}


@pytest.mark.parametrize("value", ["abc", "-4", "", "9" * 40, "1e3"])
def test_a_redelivery_count_that_is_not_a_count_is_ignored(value: str) -> None:
    from azure.functions.servicebus import ServiceBusMessage

    message = ServiceBusMessage(
        body=b"{}",
        message_id="m-1",
        delivery_count=2,
        application_properties={REDELIVERY_ATTRIBUTE: value, "other": "kept"},
        user_properties={},
    )
    delivery = message_to_delivery("default", message)
    assert delivery.receive_count == 2
    assert delivery.attributes == {"other": "kept"}


def test_a_redelivery_count_adds_to_the_hosts() -> None:
    from azure.functions.servicebus import ServiceBusMessage

    message = ServiceBusMessage(
        body=b"{}",
        message_id="m-1",
        delivery_count=1,
        application_properties={REDELIVERY_ATTRIBUTE: "4"},
        user_properties={},
    )
    assert message_to_delivery("default", message).receive_count == 5
