"""The native async hand-over (``AsyncSending``): one preparation, then the broker's async
sender on the loop; the executor only for the steps that block. A memory broker with an async
sender stands in for Service Bus and Pub/Sub (their own suites run the real clients)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from cloudq import App, group
from cloudq.adapters.base import AsyncSender, AsyncSending, OutgoingMessage
from cloudq.adapters.memory import MemoryBroker
from cloudq.adapters.skeleton import AsyncSenderBase
from cloudq.middleware import Middleware
from cloudq.testing import process_one


class LoopSender(AsyncSenderBase[MemoryBroker]):
    """Sends on the loop, recording where and what it was asked to send."""

    def __init__(self, broker: NativeMemory) -> None:
        super().__init__(broker)
        self.loop = asyncio.get_running_loop()
        self.sent: list[tuple[str, list[OutgoingMessage], str]] = []
        self.closed = False

    async def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        assert asyncio.get_running_loop() is self.loop  # never used from another loop
        self.sent.append((queue, list(messages), threading.current_thread().name))
        await asyncio.sleep(0)
        self.broker._send(queue, messages)

    async def aclose(self) -> None:
        self.closed = True


class NativeMemory(MemoryBroker):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.senders: list[LoopSender] = []
        self.sync_sends = 0
        self.ensure_threads: list[str] = []

    def open_async_sender(self) -> AsyncSender:
        sender = LoopSender(self)
        self.senders.append(sender)
        return sender

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        self.sync_sends += 1
        super().send(queue, messages)

    def ensure(self, spec: Any) -> None:
        self.ensure_threads.append(threading.current_thread().name)
        super().ensure(spec)


class PublishThreads(Middleware):
    def __init__(self) -> None:
        self.threads: list[str] = []

    def before_publish(self, app: App, **kwargs: Any) -> None:
        self.threads.append(threading.current_thread().name)
        kwargs["headers"]["seen"] = "yes"


def native_app(**settings: Any) -> tuple[App, NativeMemory]:
    name = uuid.uuid4().hex
    app = App("t", broker=f"memory://{name}", backend=f"memory://{name}", **settings)
    broker = NativeMemory(name, app.clock, app.broker.limits)
    app.__dict__["broker"] = broker
    return app, broker


def test_native_send_prepares_on_the_loop_and_awaits_the_async_sender() -> None:
    spy = PublishThreads()
    app, broker = native_app(middleware=[spy], signing_keys=["k1"])
    assert isinstance(broker, AsyncSending)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    async def main() -> tuple[str, Any]:
        first = await add.adelay(2, 3)
        await add.aapply_async((4, 5), countdown=30, queue="low")
        return threading.current_thread().name, first

    loop_thread, first = asyncio.run(main())
    assert broker.sync_sends == 0  # the sync send was never called: no thread hop
    (sender,) = broker.senders  # one sender for the loop, opened at the first send
    assert [(q, t) for q, _, t in sender.sent] == [("default", loop_thread), ("low", loop_thread)]
    assert spy.threads == [loop_thread, loop_thread]  # the same hooks, run on the loop
    assert broker.ensure_threads and loop_thread not in broker.ensure_threads  # ensure: a thread
    low = sender.sent[1][1][0]
    assert 29 < low.delay_seconds <= 30  # the delay planned as for delay()
    body = json.loads(low.body)
    assert body["headers"]["seen"] == "yes" and "sig" in json.dumps(body)  # hooked and signed
    process_one(app)
    assert first.get(timeout=5) == 5  # a worker runs what the async sender sent


def test_one_sender_per_loop_and_aclose_closes_this_loops() -> None:
    from cloudq import aio

    app, broker = native_app()

    @app.task
    def one() -> int:
        return 1

    async def send_twice() -> None:
        await one.adelay()
        await one.adelay()

    asyncio.run(send_twice())
    asyncio.run(send_twice())
    first, second = broker.senders  # a new loop, a new sender; reused within a loop
    assert len(first.sent) == len(second.sent) == 2

    async def send_and_close() -> None:
        await one.adelay()
        await aio.aclose(app)

    asyncio.run(send_and_close())
    assert broker.senders[2].closed and not first.closed


def test_app_close_from_another_thread_closes_a_running_loops_sender() -> None:
    app, broker = native_app()

    @app.task
    def one() -> int:
        return 1

    async def main() -> bool:
        await one.adelay()
        await asyncio.to_thread(app.close)  # e.g. a shutdown handler on another thread
        sender = broker.senders[0]
        async with asyncio.timeout(5):
            while not sender.closed:
                await asyncio.sleep(0.01)
        return sender.closed

    assert asyncio.run(main())


def test_claim_checks_prepare_off_the_loop_and_still_send_natively() -> None:
    spy = PublishThreads()
    app, broker = native_app(
        middleware=[spy], claim_check_url=f"memory://{uuid.uuid4().hex}-objects"
    )

    @app.task
    def echo(text: str) -> int:
        return len(text)

    big = "x" * (broker.limits.max_message_bytes + 10)

    async def main() -> str:
        await echo.adelay(big)
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    assert spy.threads and loop_thread not in spy.threads  # the put may block: a thread
    (sender,) = broker.senders
    assert len(sender.sent[0][1][0].body) < 2_000  # a pointer went out, natively
    assert broker.sync_sends == 0


def test_a_bad_message_sends_nothing_and_raises_as_the_sync_send_does() -> None:
    app, broker = native_app()

    @app.task
    def echo(text: str) -> int:
        return len(text)

    with pytest.raises(Exception, match="bytes"):
        asyncio.run(echo.adelay("x" * (broker.limits.max_message_bytes + 10)))
    assert broker.stats("default").visible == 0


def test_group_and_signature_adelay_send_natively() -> None:
    app, broker = native_app()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    async def main() -> tuple[Any, Any]:
        g = await group(add.s(1, 1), add.s(2, 2)).adelay()
        s = await add.s(3).adelay(4)
        return g, s

    g, s = asyncio.run(main())
    (sender,) = broker.senders
    assert sum(len(messages) for _, messages, _ in sender.sent) == 3
    assert broker.sync_sends == 0
    for _ in range(3):
        process_one(app)
    assert g.join(timeout=5) == [2, 4] and s.get(timeout=5) == 7


def test_a_sender_opened_by_an_async_task_is_closed_with_its_task_loop_at_worker_stop() -> None:
    from cloudq.testing import start_worker

    app, broker = native_app()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def relay(a: int) -> str:
        sent = await add.adelay(a, a)  # on the worker thread's kept loop
        return sent.id

    with start_worker(app, ["default"], concurrency=1):
        relay.delay(1).get(timeout=10)
        relay.delay(2).get(timeout=10)
        (sender,) = broker.senders  # one for the slot's loop, kept between tasks
        assert not sender.closed
    assert sender.closed  # the worker stopped: closed with the loop, as a PerLoop value
