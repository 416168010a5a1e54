"""``memory://``: an in-process broker with the semantics of a cloud queue, for tests and demos.

It has what the real adapters have: native delays, leases that expire and redeliver, a receive
count, dead-lettering after ``max_receive_count``. Brokers with the same URL name in one process
share their queues (``memory://`` and ``memory://shop`` are two brokers). Limits can be lowered
in the URL to exercise the core's planning: ``memory://t?max_delay_seconds=900&max_message_bytes=1000``.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cloudq.adapters.base import (
    DEAD_LETTER_SUFFIX,
    BrokerLimits,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    QueueStats,
    dead_letter_queue_name,
)
from cloudq.adapters.skeleton import BrokerBase
from cloudq.adapters.urls import url_count, url_number, url_options
from cloudq.adapters.wire import DEAD_LETTER_REASON_ATTRIBUTE, MAX_RECEIVE_COUNT_REASON
from cloudq.clock import Clock

DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_BATCH = 10


@dataclass
class _Message:
    message_id: str
    body: bytes
    attributes: dict[str, str]
    receive_count: int = 0
    group: str | None = None


@dataclass
class _Queue:
    spec: QueueSpec
    ready: list[tuple[float, int, _Message]] = field(default_factory=list)
    """Heap of (visible at, sequence, message)."""
    in_flight: dict[str, tuple[float, _Message]] = field(default_factory=dict)
    """Receipt handle -> (lease expiry, message)."""


class MemoryBroker(BrokerBase):
    """One named in-process broker; thread-safe. The send checks and dead-lettering are the
    skeleton's, as on the clouds: a test on memory meets the same refusals."""

    provider = "memory"

    def __init__(self, name: str, clock: Clock, limits: BrokerLimits) -> None:
        self.name = name
        self.limits = limits
        self._clock = clock
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._seq = itertools.count()

    # --- helpers (caller holds the lock) ---------------------------------------------------
    def _queue(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            # A dead-letter queue is the end of the line: reading it never moves messages on.
            unlimited = name.endswith(DEAD_LETTER_SUFFIX)
            spec = QueueSpec(name, max_receive_count=sys.maxsize) if unlimited else QueueSpec(name)
            q = self._queues[name] = _Queue(spec)
        return q

    def _push(self, q: _Queue, msg: _Message, delay: float) -> None:
        heapq.heappush(q.ready, (self._clock.monotonic() + delay, next(self._seq), msg))

    def _reclaim_expired(self, q: _Queue) -> None:
        now = self._clock.monotonic()
        for handle, (expiry, msg) in list(q.in_flight.items()):
            if expiry <= now:
                del q.in_flight[handle]
                self._push(q, msg, 0.0)

    def _dead_letter(self, q: _Queue, msg: _Message, reason: str) -> None:
        """The broker's own dead-lettering, after ``max_receive_count`` receives."""
        dlq = self._queue(dead_letter_queue_name(q.spec.name))
        attrs = {**msg.attributes, DEAD_LETTER_REASON_ATTRIBUTE: reason}
        self._push(dlq, _Message(msg.message_id, msg.body, attrs), 0.0)

    # --- the contract ----------------------------------------------------------------------
    def ensure(self, spec: QueueSpec) -> None:
        with self._cond:
            self._queue(spec.name).spec = spec
            self._queue(dead_letter_queue_name(spec.name))

    def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        with self._cond:
            q = self._queue(queue)
            for m in messages:
                msg = _Message(
                    m.message_id or uuid.uuid4().hex, m.body, dict(m.attributes), group=m.group
                )
                self._push(q, msg, m.delay_seconds)
            self._cond.notify_all()

    def receive(
        self, queue: str, max_messages: int, wait_seconds: float, lease_seconds: float
    ) -> list[Delivery]:
        max_messages = min(max_messages, self.limits.max_batch)
        # Waiting is in real time even under a fake clock: tests with a fake clock poll (wait 0).
        real_end = time.monotonic() + wait_seconds
        with self._cond:
            while True:
                out = self._take(queue, max_messages, lease_seconds)
                remaining = real_end - time.monotonic()
                if out or remaining <= 0:
                    return out
                self._cond.wait(min(remaining, 0.05))

    def _take(self, queue: str, max_messages: int, lease_seconds: float) -> list[Delivery]:
        q = self._queue(queue)
        self._reclaim_expired(q)
        now = self._clock.monotonic()
        out: list[Delivery] = []
        while q.ready and len(out) < max_messages and q.ready[0][0] <= now:
            _, _, msg = heapq.heappop(q.ready)
            msg.receive_count += 1
            if msg.receive_count > q.spec.max_receive_count:
                self._dead_letter(q, msg, MAX_RECEIVE_COUNT_REASON)
                continue
            handle = uuid.uuid4().hex
            q.in_flight[handle] = (now + lease_seconds, msg)
            out.append(
                Delivery(
                    queue=queue,
                    body=msg.body,
                    message_id=msg.message_id,
                    receive_count=msg.receive_count,
                    handle=handle,
                    attributes=dict(msg.attributes),
                    leased_until=now + lease_seconds,
                    group=msg.group,
                )
            )
        return out

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        with self._cond:
            for d in deliveries:
                self._queue(d.queue).in_flight.pop(d.handle, None)

    def release(self, deliveries: Sequence[Delivery], delay_seconds: float = 0.0) -> None:
        with self._cond:
            for d in deliveries:
                q = self._queue(d.queue)
                entry = q.in_flight.pop(d.handle, None)
                if entry is not None:
                    self._push(q, entry[1], delay_seconds)
            self._cond.notify_all()

    def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        with self._cond:
            now = self._clock.monotonic()
            for d in deliveries:
                q = self._queue(d.queue)
                entry = q.in_flight.get(d.handle)
                if entry is not None:
                    q.in_flight[d.handle] = (now + seconds, entry[1])
                    d.leased_until = now + seconds

    def dead_letter(self, delivery: Delivery, reason: str, body: bytes | None = None) -> None:
        with self._cond:  # reentrant: the copy and the ack are one step for other threads
            super().dead_letter(delivery, reason, body)
            self._cond.notify_all()

    def _send_dead_letter(
        self, delivery: Delivery, dlq: str, body: bytes, attributes: dict[str, str]
    ) -> None:
        self._push(self._queue(dlq), _Message(delivery.message_id, body, attributes), 0.0)

    def stats(self, queue: str) -> QueueStats:
        with self._cond:
            q = self._queue(queue)
            self._reclaim_expired(q)
            now = self._clock.monotonic()
            visible = sum(1 for at, _, _ in q.ready if at <= now)
            dlq = self._queue(dead_letter_queue_name(queue))
            return QueueStats(
                queue=queue,
                visible=visible,
                in_flight=len(q.in_flight),
                delayed=len(q.ready) - visible,
                dead_lettered=len(dlq.ready) + len(dlq.in_flight),
            )

    def purge(self, queue: str) -> None:
        with self._cond:
            q = self._queue(queue)
            q.ready.clear()
            q.in_flight.clear()

    def close(self) -> None:
        """Nothing to close: the queues live as long as the process."""


_brokers: dict[tuple[str, int], MemoryBroker] = {}
_brokers_lock = threading.Lock()


_URL_OPTIONS = frozenset(
    {"max_delay_seconds", "max_lease_seconds", "max_message_bytes", "max_batch"}
)


def _limits_from_query(url: str, query: str) -> BrokerLimits:
    params = url_options(query, _URL_OPTIONS, "memory")
    return BrokerLimits(
        max_delay_seconds=url_number(params, "max_delay_seconds", url, zero=True),
        max_lease_seconds=url_number(params, "max_lease_seconds", url),
        max_message_bytes=url_count(params, "max_message_bytes", url) or DEFAULT_MAX_MESSAGE_BYTES,
        max_batch=url_count(params, "max_batch", url) or DEFAULT_MAX_BATCH,
    )


def open_memory_broker(url: str, clock: Clock) -> MemoryBroker:
    """The process-wide broker named by the URL's host part (per clock), made on first use.

    :param url: ``memory://NAME`` with optional limits, as a cloud broker would have them:
        ``max_delay_seconds`` (0: no native delay, as Pub/Sub), ``max_lease_seconds``,
        ``max_message_bytes``, ``max_batch``.
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    parts = urlsplit(url)
    name = parts.netloc + parts.path
    key = (name, id(clock))
    with _brokers_lock:
        broker = _brokers.get(key)
        if broker is None:
            broker = _brokers[key] = MemoryBroker(name, clock, _limits_from_query(url, parts.query))
        return broker
