"""The Service Bus adapter beyond the shared contract, and the Azure Functions handler.

The Functions host is .NET and not installable here: the handler is driven with
``azure.functions`` ServiceBusMessage objects built from messages the real SDK received from the
endpoint, and the test then settles those messages as the host would (complete when the
function returned, abandon when it raised).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cloudq import App, State
from cloudq.adapters.base import OutgoingMessage, QueueSpec
from cloudq.errors import MessageTooLarge
from cloudq.testing import start_worker, wait_for
from cloudq_servicebus.broker import REASON_ATTRIBUTE, QueueNotFoundError, ServiceBusBroker
from cloudq_servicebus.functions import REDELIVERY_ATTRIBUTE, functions_handler
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def app(servicebus_env: ServiceBusEndpoint, azure_storage_env: str) -> Iterator[App]:
    name = uuid.uuid4().hex[:10]
    app = App(
        "functions",
        broker=f"servicebus://?prefix=f{name}-",
        backend=f"azuretable://cloudq{name}?create=1",
        queue_lease_seconds=30,
        queue_max_receive_count=5,
    )

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x * 2

    @app.task(name="fails")
    def fails() -> None:
        raise ValueError("poison")

    calls: dict[str, int] = {}

    @app.task(name="flaky", autoretry_for=(ConnectionError,), retry_backoff=1, max_retries=2)
    def flaky(key: str) -> str:
        calls[key] = calls.get(key, 0) + 1
        if calls[key] == 1:
            raise ConnectionError("once")
        return f"ok after {calls[key]}"

    @app.task(name="size")
    def size(blob: str) -> int:
        return len(blob)

    app.ensure_queue("default")
    yield app
    app.close()


def _receive_raw(
    app: App, connection: str, count: int, timeout: float = 10
) -> tuple[Any, list[Any]]:
    """(receiver, messages) taken with the plain SDK in peek-lock, as the Functions host does."""
    from azure.servicebus import ServiceBusClient

    assert isinstance(app.broker, ServiceBusBroker)
    client = ServiceBusClient.from_connection_string(connection)
    receiver = client.get_queue_receiver(app.broker.physical_name("default"))
    receiver.__enter__()
    got: list[Any] = []
    wait_for(
        lambda: (
            got.extend(receiver.receive_messages(count - len(got), max_wait_time=1))
            or len(got) >= count
        ),
        timeout=timeout,
        interval=0,
        message=f"{count} trigger message(s)",
    )
    return receiver, got


def _as_trigger(message: Any) -> Any:
    """The azure-functions message the host would hand over (its delivery count is 1-based)."""
    from azure.functions.servicebus import ServiceBusMessage

    return ServiceBusMessage(
        body=b"".join(message.body),
        message_id=str(message.message_id),
        delivery_count=(message.delivery_count or 0) + 1,
        sequence_number=message.sequence_number,
        application_properties={
            k.decode(): v.decode() if isinstance(v, bytes) else v
            for k, v in (message.application_properties or {}).items()
        },
        user_properties={},
    )


def test_functions_handler_batch_then_single(app: App, servicebus_env: ServiceBusEndpoint) -> None:
    handler = functions_handler(app, queue="default")
    ok = app.tasks["ok"].delay(21)
    flaky = app.tasks["flaky"].delay("k")
    fails = app.tasks["fails"].delay()

    receiver, messages = _receive_raw(app, servicebus_env.connection, 3)
    handler([_as_trigger(m) for m in messages])  # cardinality "many"
    for m in messages:  # the host completes a batch whose function returned
        receiver.complete_message(m)
    assert ok.get(timeout=5) == 42
    assert fails.state == State.FAILURE
    assert flaky.state == State.RETRY

    # The retry copy was sent with its 1 s backoff: it comes as the next trigger.
    _, (retry,) = _receive_raw(app, servicebus_env.connection, 1)
    assert retry.delivery_count == 0
    handler(_as_trigger(retry))  # cardinality "one"
    receiver.complete_message(retry)
    assert flaky.get(timeout=5) == "ok after 2"

    [dead] = app.broker.receive("default-dlq", 10, 1, 30)
    assert "ValueError: poison" in dead.attributes[REASON_ATTRIBUTE]
    app.broker.ack([dead])
    receiver.close()


def test_functions_handler_reloads_revoked_ids_before_its_batch(
    app: App, servicebus_env: ServiceBusEndpoint
) -> None:
    """A task revoked from another process (its id only in the shared Azure Table) is completed
    unrun by the next invocation."""
    handler = functions_handler(app, queue="default")
    doomed = app.tasks["ok"].delay(1)
    kept = app.tasks["ok"].delay(2)
    app.control.revoke(doomed.id)
    app.control.revoked.replace([])  # this process forgets: only the store knows
    receiver, messages = _receive_raw(app, servicebus_env.connection, 2)
    handler([_as_trigger(m) for m in messages])
    for m in messages:
        receiver.complete_message(m)
    receiver.close()
    assert doomed.state == State.REVOKED
    assert kept.get(timeout=5) == 4


def test_functions_handler_sends_back_a_message_whose_outcome_cannot_be_applied(
    app: App, servicebus_env: ServiceBusEndpoint
) -> None:
    from azure.servicebus.management import ServiceBusAdministrationClient

    assert isinstance(app.broker, ServiceBusBroker)
    handler = functions_handler(app, queue="default")
    fails = app.tasks["fails"].delay()
    ok = app.tasks["ok"].delay(1)
    # No dead-letter queue to send to: the poison message's outcome cannot be applied.
    admin = ServiceBusAdministrationClient.from_connection_string(
        servicebus_env.admin_connection or servicebus_env.connection
    )
    admin.update_queue(
        admin.get_queue(app.broker.physical_name("default")),
        forward_dead_lettered_messages_to=None,
    )
    admin.delete_queue(app.broker.physical_name("default-dlq"))

    receiver, messages = _receive_raw(app, servicebus_env.connection, 2)
    handler([_as_trigger(m) for m in messages])  # returns: nothing for the host to abandon
    for m in messages:  # the host completes a batch whose function returned
        receiver.complete_message(m)
    assert ok.get(timeout=5) == 2
    _, [again] = _receive_raw(app, servicebus_env.connection, 1)
    assert again.message_id == fails.id, "only the poison message comes back"
    assert again.application_properties[REDELIVERY_ATTRIBUTE.encode()] == b"1", "counted"
    assert fails.state != State.SUCCESS
    receiver.close()
    admin.close()


def test_big_payload_travels_as_a_blob_claim_check(
    app: App, servicebus_env: ServiceBusEndpoint
) -> None:
    app.conf.claim_check_url = f"azblob://cloudq-{uuid.uuid4().hex[:8]}/big?create=1"
    blob = "x" * 400_000  # over the 256 KB standard-tier message limit
    result = app.tasks["size"].delay(blob)
    assert app.claim_checks is not None
    with start_worker(app, queues=["default"]):
        assert result.get(timeout=15) == 400_000
    objects = list(app.claim_checks._client.list_blobs())  # type: ignore[attr-defined]
    assert objects == [], "the parked body was deleted after the ack"


def test_release_with_delay_does_not_count_a_delivery(app: App) -> None:
    broker = app.broker
    broker.send("default", [OutgoingMessage(b"wait", message_id="m-1", attributes={"a": "b"})])
    [first] = broker.receive("default", 1, 5, 30)
    broker.release([first], 1.5)
    assert broker.stats("default").delayed == 1
    again: list[Any] = []
    wait_for(lambda: again.extend(broker.receive("default", 1, 1, 30)) or again, timeout=10)
    assert (again[0].body, again[0].message_id, again[0].receive_count) == (b"wait", "m-1", 1)
    assert again[0].attributes == {"a": "b"}
    broker.ack(again)


def test_errors_name_the_operation_and_queue(app: App) -> None:
    broker = app.broker
    with pytest.raises(QueueNotFoundError, match=r"Service Bus .* on queue '.*nowhere'.*Terraform"):
        broker.send("nowhere", [OutgoingMessage(b"x")])
    too_big = b"x" * broker.limits.max_message_bytes + b"x"
    with pytest.raises(MessageTooLarge, match="nothing was sent"):
        broker.send("default", [OutgoingMessage(b"fine"), OutgoingMessage(too_big)])
    assert broker.stats("default").visible == 0
    # Many messages whose total is over one batch: sent in several batches, all arrive.
    chunk = b"y" * (broker.limits.max_message_bytes // 2)
    broker.send("default", [OutgoingMessage(chunk) for _ in range(3)])
    wait_for(lambda: broker.stats("default").visible == 3, timeout=5)
    broker.purge("default")
    wait_for(lambda: broker.stats("default").visible == 0, timeout=5)


def test_broker_dead_letters_land_in_the_dlq_with_their_reason(app: App) -> None:
    broker = app.broker
    broker.ensure(QueueSpec("limited", lease_seconds=30, max_receive_count=1))
    broker.send("limited", [OutgoingMessage(b"once")])
    [d] = broker.receive("limited", 1, 5, 30)
    broker.release([d])  # abandon: the one delivery allowed is spent
    dead: list[Any] = []
    wait_for(lambda: dead.extend(broker.receive("limited-dlq", 1, 1, 30)) or dead, timeout=10)
    assert dead[0].body == b"once"
    assert dead[0].attributes[REASON_ATTRIBUTE].startswith("MaxDeliveryCountExceeded")
    broker.ack(dead)


def test_a_send_racing_another_threads_failed_send_uses_a_fresh_sender(
    servicebus_broker: ServiceBusBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a failed send closes the queue's shared sender; a send on another thread
    that had already picked it up then hit the SDK's ``ValueError: The handler has already been
    shutdown`` (not a BrokerError: seen from ``delay()`` in several threads during an outage).
    It now takes a fresh sender, and dropping the failed one leaves a fresh one alone."""
    broker = servicebus_broker
    broker.ensure(QueueSpec("race"))
    stale = broker._sender("race")
    broker._drop("race", sender=True)  # what the failed send on the other thread did
    fetch = broker._sender
    handed: list[object] = []

    def racing(queue: str) -> Any:
        entry = stale if not handed else fetch(queue)
        handed.append(entry)
        return entry

    monkeypatch.setattr(broker, "_sender", racing)
    broker.send("race", [OutgoingMessage(b"after the race")])
    assert handed[0] is stale and handed[1] is not stale
    broker._drop("race", sender=True, entry=stale)  # a late drop of the closed one
    broker.send("race", [OutgoingMessage(b"fresh sender still open")])
    got: list[Any] = []
    wait_for(lambda: got.extend(broker.receive("race", 10, 0.5, 30)) or len(got) >= 2, 10)
    assert sorted(d.body for d in got) == [b"after the race", b"fresh sender still open"]
    broker.ack(got)
