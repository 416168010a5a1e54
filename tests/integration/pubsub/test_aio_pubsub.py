"""``await task.adelay()`` on ``PublisherAsyncClient`` against the Pub/Sub emulator: received
with its attributes, ordering key and eta, split into requests as the sync send splits them,
run by the worker's code, the loop never handed to a thread, closed by ``cloudq.aio.aclose``."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from cloudq import App, aio, group
from cloudq.envelope import decode
from cloudq.middleware import Middleware
from cloudq.testing import process_one
from cloudq_pubsub.aio_publisher import PubSubAsyncSender
from cloudq_pubsub.broker import PubSubBroker
from tests.fixtures.pubsub_emulator import GCP_PROJECT, unique_prefix
from tests.integration.pubsub.helpers import pull_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Threads(Middleware):
    def __init__(self) -> None:
        self.threads: list[str] = []

    def before_publish(self, app: App, **kwargs: Any) -> None:
        self.threads.append(threading.current_thread().name)


def make_app(spy: Threads) -> App:
    app = App(
        "psaio",
        broker=f"pubsub://{GCP_PROJECT}?prefix={unique_prefix('a')}",
        backend=f"memory://{uuid.uuid4().hex}",
        middleware=[spy],
    )

    @app.task(name="psaio.step", queue="orders.fifo", fifo_group=lambda order, s: f"o-{order}")
    def step(order: int, s: str) -> str:
        return f"{order}:{s}"

    @app.task(name="psaio.add")
    def add(a: int, b: int) -> int:
        return a + b

    return app


def test_adelay_publishes_on_the_async_client_with_key_attributes_and_eta(pubsub_env: str) -> None:
    spy = Threads()
    app = make_app(spy)
    broker = app.broker
    assert isinstance(broker, PubSubBroker)
    broker.send = None  # type: ignore[assignment, method-assign]  # the sync send must not run
    add, step = app.tasks["psaio.add"], app.tasks["psaio.step"]

    async def main() -> tuple[Any, Any, Any, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(tick())
        now = await add.adelay(2, 3)
        later = await add.aapply_async((1, 1), countdown=600, queue="later")
        await step.adelay(7, "pay")
        g = await group(*(add.s(i, i) for i in range(12))).adelay()  # > max_batch: 2 sends
        assert isinstance(await aio.async_sender(app), PubSubAsyncSender)
        ticker.cancel()
        return now, later, g, ticks

    loop_thread = threading.current_thread().name
    now, later, g, ticks = asyncio.run(main())
    del broker.send  # the class's again, for the worker's own sends
    assert spy.threads == [loop_thread] * 15  # prepared on the loop, no thread hop
    assert ticks > 0  # the loop ran on while the publishes were out

    (fifo,) = pull_all(app, "orders.fifo", timeout=5)
    assert fifo.group == "o-7"  # the ordering key, as the sync send sets it
    assert fifo.attributes["cloudq-task"] == "psaio.step"
    assert fifo.message_id == decode(fifo.body).id
    (held,) = pull_all(app, "later", timeout=5)
    assert held.message_id == later.id  # the task id travels as the message id attribute
    assert decode(held.body).eta is not None  # no native delay: the eta travels, as delay()'s

    for _ in range(13):
        process_one(app, "default")
    assert now.get(timeout=10) == 5
    assert g.join(timeout=10) == [2 * i for i in range(12)]
    app.close()


def test_aclose_closes_the_async_publisher(pubsub_env: str) -> None:
    app = make_app(Threads())

    async def main() -> PubSubAsyncSender:
        await app.tasks["psaio.add"].adelay(1, 2)
        sender = await aio.async_sender(app)
        assert isinstance(sender, PubSubAsyncSender)
        channel = sender._client.transport.grpc_channel
        await aio.aclose(app)
        with pytest.raises(Exception, match=r"(?i)closed"):  # the gRPC channel is closed
            await channel.unary_unary("/x")(b"")
        return sender

    assert asyncio.run(main())._client is None


def test_a_missing_topic_fails_as_the_sync_send_does(pubsub_env: str) -> None:
    from cloudq.adapters.skeleton import QueueNotFoundError

    app = make_app(Threads())
    app.conf.create_missing_queues = False

    with pytest.raises(QueueNotFoundError, match="does not exist"):
        asyncio.run(app.tasks["psaio.add"].adelay(1, 2))
    app.close()
