"""The adapter contract: the small surface every cloud queue implements for cloudq.

The core plans around each adapter's declared ``BrokerLimits`` (native delay cap, lease cap,
message size, batch size) instead of knowing any provider by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from cloudq.adapters.wire import DEAD_LETTER_SUFFIX, dead_letter_queue_name

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "AsyncSender",
    "AsyncSending",
    "Broker",
    "BrokerLimits",
    "Delivery",
    "OutgoingMessage",
    "QueueSpec",
    "QueueStats",
    "dead_letter_queue_name",
]


@dataclass(frozen=True)
class BrokerLimits:
    """What a provider allows; ``None`` means no limit."""

    max_delay_seconds: float | None
    """Longest native delay on send; longer etas travel in hops (re-sent until due). 0: the
    provider has none (Pub/Sub): a message due later is held with ``release(delay)`` instead."""
    max_lease_seconds: float | None
    """Longest a received message can stay invisible (visibility / ack deadline / lock)."""
    max_message_bytes: int
    """Largest encoded body accepted by ``send``."""
    max_batch: int
    """Most messages one ``send`` / ``receive`` / ``ack`` call may carry."""
    long_poll_returns_at_once: bool = False
    """A waiting ``receive`` returns as soon as a message is there (SQS long polling): a
    single-queue worker then long-polls straight away instead of trying a short poll first."""


@dataclass(frozen=True)
class QueueSpec:
    """How ``ensure`` should create a queue and its dead-letter queue."""

    name: str
    lease_seconds: float = 30.0
    max_receive_count: int = 10
    """Broker-side redeliveries before the broker itself dead-letters (the crash safety net)."""
    fifo: bool = False


@dataclass(frozen=True)
class OutgoingMessage:
    """One message for ``send``."""

    body: bytes
    delay_seconds: float = 0.0
    """Must not exceed ``BrokerLimits.max_delay_seconds``; the core splits longer delays."""
    message_id: str | None = None
    """The task id: used for deduplication where the provider has it (SQS FIFO)."""
    group: str | None = None
    """FIFO message group / ordering key, where the provider has one."""
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Delivery:
    """One received message, held under a lease until acked, released or dead-lettered."""

    queue: str
    body: bytes
    message_id: str
    receive_count: int
    """How many times the broker has handed this message out, this time included."""
    handle: Any = None
    """The adapter's own token (receipt handle, ack id, lock token)."""
    attributes: dict[str, str] = field(default_factory=dict)
    leased_until: float = 0.0
    """Monotonic time the current lease runs out, as tracked by the receiver."""
    group: str | None = None
    """FIFO message group: a worker runs the deliveries of one group one at a time, in order."""


@dataclass(frozen=True)
class QueueStats:
    """Depths of one queue and its dead-letter queue; ``None`` where a provider cannot tell."""

    queue: str
    visible: int | None
    in_flight: int | None
    delayed: int | None
    dead_lettered: int | None


@runtime_checkable
class Broker(Protocol):
    """A cloud queue as cloudq uses it. Synchronous; batched where the provider allows."""

    limits: BrokerLimits

    def ensure(self, spec: QueueSpec) -> None:
        """Create the queue and its dead-letter queue if missing (idempotent)."""
        ...

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Enqueue messages (at most ``limits.max_batch``); raise if any could not be sent."""
        ...

    def receive(
        self, queue: str, max_messages: int, wait_seconds: float, lease_seconds: float
    ) -> list[Delivery]:
        """Take up to ``max_messages``, waiting up to ``wait_seconds`` for the first one."""
        ...

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete the messages for good."""
        ...

    def release(self, deliveries: Sequence[Delivery], delay_seconds: float = 0.0) -> None:
        """Hand the messages back, visible again after ``delay_seconds``."""
        ...

    def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Keep the messages invisible for ``seconds`` more from now (a heartbeat), and move
        each ``leased_until`` to match, counted from before the call (never later than the
        broker's own deadline)."""
        ...

    def dead_letter(self, delivery: Delivery, reason: str, body: bytes | None = None) -> None:
        """Move a message to its dead-letter queue with ``reason`` (and ``body`` if given)."""
        ...

    def stats(self, queue: str) -> QueueStats:
        """Current depths of the queue and its dead-letter queue."""
        ...

    def purge(self, queue: str) -> None:
        """Drop every message of the queue."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class AsyncSender(Protocol):
    """A broker's native asynchronous send, bound to the event loop it was opened on (the
    async SDK clients' connections belong to one loop). Optional: see ``AsyncSending``."""

    async def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """``Broker.send`` awaited: the same checks, the same errors, never blocking the loop."""
        ...

    async def aclose(self) -> None:
        """Close its connections (``cloudq.aio.aclose(app)``, on the loop it was opened on)."""
        ...


@runtime_checkable
class AsyncSending(Protocol):
    """A broker with an ``AsyncSender``. ``cloudq.aio`` opens one per event loop, on that loop,
    lazily at the first ``adelay`` there, and keeps it until ``aclose``; a broker without
    ``open_async_sender`` has its sends run on the app's bounded thread pool instead."""

    def open_async_sender(self) -> AsyncSender | None:
        """A new sender for the running loop, or ``None`` where this broker's configuration
        has no async client (its sends then take the thread pool). Called on the loop: it must
        not block, nor connect before its first send."""
        ...
