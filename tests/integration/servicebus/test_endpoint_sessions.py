"""The test endpoint's sessions, driven by the plain azure-servicebus SDK: what cloudq's FIFO
on Service Bus relies on (accept next available, a session's messages in order, the session
lock and its renewal, the session given back when its receiver closes)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def client(servicebus_env: ServiceBusEndpoint) -> Iterator[Any]:
    from azure.servicebus import ServiceBusClient

    # No SDK retries: a refused accept would otherwise be retried past the 5 s session lock.
    with ServiceBusClient.from_connection_string(servicebus_env.connection, retry_total=0) as c:
        yield c


@pytest.fixture
def queue(servicebus_env: ServiceBusEndpoint) -> Iterator[str]:
    from azure.servicebus.management import ServiceBusAdministrationClient

    name = f"s{uuid.uuid4().hex[:10]}.fifo"
    admin = ServiceBusAdministrationClient.from_connection_string(
        servicebus_env.admin_connection or servicebus_env.connection
    )
    admin.create_queue(name, requires_session=True, lock_duration=dt.timedelta(seconds=5))
    assert admin.get_queue(name).requires_session
    yield name
    admin.delete_queue(name)
    admin.close()


def _send(client: Any, queue: str, *pairs: tuple[str, str]) -> None:
    from azure.servicebus import ServiceBusMessage

    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(body, session_id=s) for s, body in pairs])


def test_next_available_session_gets_its_messages_in_order(client: Any, queue: str) -> None:
    from azure.servicebus import NEXT_AVAILABLE_SESSION

    _send(client, queue, ("a", "a0"), ("b", "b0"), ("a", "a1"), ("b", "b1"), ("a", "a2"))
    seen: dict[str, list[str]] = {}
    for _ in range(2):
        with client.get_queue_receiver(
            queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2
        ) as receiver:
            session = receiver.session
            assert session.locked_until_utc > dt.datetime.now(dt.UTC)
            got = receiver.receive_messages(max_message_count=10, max_wait_time=1)
            assert {m.session_id for m in got} == {session.session_id}
            seen[session.session_id] = [str(m) for m in got]
            for m in got:
                receiver.complete_message(m)
    assert seen == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"]}


def test_a_locked_session_is_not_handed_out_again_until_released(client: Any, queue: str) -> None:
    from azure.servicebus import NEXT_AVAILABLE_SESSION
    from azure.servicebus.exceptions import OperationTimeoutError

    _send(client, queue, ("a", "a0"), ("a", "a1"))
    first = client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2)
    first.__enter__()
    (m0,) = first.receive_messages(max_message_count=1, max_wait_time=1)
    assert str(m0) == "a0"
    with (
        pytest.raises(OperationTimeoutError),
        client.get_queue_receiver(
            queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
        ) as other,
    ):
        other.receive_messages(max_message_count=1, max_wait_time=1)
    first.close()  # gives the session back: a0 comes back first, counted
    with client.get_queue_receiver(queue, session_id="a", max_wait_time=2) as again:
        got = again.receive_messages(max_message_count=10, max_wait_time=1)
        assert [str(m) for m in got] == ["a0", "a1"]
        assert got[0].delivery_count == 1
        for m in got:
            again.complete_message(m)


def test_session_lock_renewal_keeps_the_session(client: Any, queue: str) -> None:
    _send(client, queue, ("a", "a0"))
    with client.get_queue_receiver(queue, session_id="a", max_wait_time=2) as receiver:
        (m,) = receiver.receive_messages(max_message_count=1, max_wait_time=1)
        first = receiver.session.locked_until_utc
        deadline = time.monotonic() + 6  # beyond the 5 s lock
        while time.monotonic() < deadline:
            assert receiver.session.renew_lock() >= first
            time.sleep(1)
        with pytest.raises(TypeError):
            receiver.renew_message_lock(m)
        receiver.complete_message(m)


def test_sessions_and_plain_receivers_do_not_mix(client: Any, queue: str) -> None:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.exceptions import ServiceBusError

    with pytest.raises(ServiceBusError), client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage(b"no session"))
    with pytest.raises(ServiceBusError), client.get_queue_receiver(queue) as plain:
        plain.receive_messages(max_message_count=1, max_wait_time=1)
