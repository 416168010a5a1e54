"""``await task.adelay()`` on ``azure.servicebus.aio`` against the Service Bus test endpoint:
received with its attributes, schedule and session, run by the worker's code, the loop never
handed to a thread, the aio client closed by ``cloudq.aio.aclose``."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from cloudq import App, aio, group
from cloudq.middleware import Middleware
from cloudq.testing import process_one
from cloudq_servicebus.aio_sender import ServiceBusAsyncSender
from cloudq_servicebus.broker import ServiceBusBroker
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Threads(Middleware):
    def __init__(self) -> None:
        self.threads: list[str] = []

    def before_publish(self, app: App, **kwargs: Any) -> None:
        self.threads.append(threading.current_thread().name)


def session_message(connection: str, queue: str) -> Any:
    """The one message of session ``order-7``, taken with the plain SDK."""
    from azure.servicebus import ServiceBusClient

    with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_receiver(queue, session_id="order-7") as receiver,
    ):
        (message,) = receiver.receive_messages(max_message_count=10, max_wait_time=2)
        receiver.complete_message(message)
        return message


def make_app(spy: Threads) -> App:
    app = App(
        "sbaio",
        broker=f"servicebus://?prefix=a{uuid.uuid4().hex[:8]}-",
        backend=f"memory://{uuid.uuid4().hex}",
        middleware=[spy],
    )

    @app.task(
        name="sbaio.step", queue="orders.fifo", fifo_group=lambda order, step: f"order-{order}"
    )
    def step(order: int, step: str) -> str:
        return f"{order}:{step}"

    @app.task(name="sbaio.add")
    def add(a: int, b: int) -> int:
        return a + b

    return app


def test_adelay_sends_on_the_aio_client_with_attributes_schedule_and_session(
    servicebus_env: ServiceBusEndpoint,
) -> None:
    spy = Threads()
    app = make_app(spy)
    broker = app.broker
    assert isinstance(broker, ServiceBusBroker)
    broker.send = None  # type: ignore[assignment, method-assign]  # the sync send must not run
    add, step = app.tasks["sbaio.add"], app.tasks["sbaio.step"]

    async def main() -> tuple[Any, ServiceBusAsyncSender, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(tick())
        now = await add.adelay(2, 3)
        await add.aapply_async((1, 1), countdown=60)
        await step.adelay(7, "pay")
        g = await group(add.s(1, 2), add.s(3, 4)).adelay()
        sender = await aio.async_sender(app)
        assert isinstance(sender, ServiceBusAsyncSender)
        ticker.cancel()
        return (now, g), sender, ticks

    loop_thread = threading.current_thread().name
    (now, g), _, ticks = asyncio.run(main())
    del broker.send  # the class's again, for the worker's own sends
    assert spy.threads == [loop_thread] * 5  # prepared on the loop, no thread hop
    assert ticks > 0  # the loop ran on while the sends were out
    assert broker.stats("default").delayed == 1  # held by Service Bus, as delay() schedules

    fifo = session_message(servicebus_env.connection, broker.physical_name("orders.fifo"))
    assert fifo.session_id == "order-7"  # the group is the session, as the sync send sets it
    assert dict(fifo.application_properties)[b"cloudq-task"] == b"sbaio.step"

    for _ in range(3):
        process_one(app, "default")
    assert now.get(timeout=10) == 5
    assert g.join(timeout=10) == [3, 7]
    app.close()


def test_aclose_closes_the_aio_client_and_its_senders(servicebus_env: ServiceBusEndpoint) -> None:
    app = make_app(Threads())
    add = app.tasks["sbaio.add"]

    async def main() -> tuple[ServiceBusAsyncSender, Any, Any]:
        await add.adelay(1, 2)
        sender = await aio.async_sender(app)
        assert isinstance(sender, ServiceBusAsyncSender)
        ((sdk, _),) = sender._senders.values()
        client = sender._client
        await aio.aclose(app)
        return sender, sdk, client

    sender, sdk, client = asyncio.run(main())
    assert sender._senders == {}
    assert not sdk._running  # the AMQP link closed
    assert not client._handlers  # and the client holds none


def test_a_missing_queue_fails_as_the_sync_send_does_then_a_fresh_link_sends(
    servicebus_env: ServiceBusEndpoint,
) -> None:
    from cloudq.adapters.skeleton import QueueNotFoundError

    app = make_app(Threads())
    app.conf.create_missing_queues = False
    add = app.tasks["sbaio.add"]

    async def main() -> Any:
        with pytest.raises(QueueNotFoundError, match="does not exist"):
            await add.adelay(1, 2)
        await asyncio.to_thread(app.broker.ensure, app.queue_spec("default"))
        return await add.adelay(2, 2)  # the failed sender was dropped: a new one attaches

    result = asyncio.run(main())
    process_one(app, "default")
    assert result.get(timeout=10) == 4
    app.close()
