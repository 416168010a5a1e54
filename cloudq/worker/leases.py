"""A worker's leases and acknowledgements: what it holds, its acks batched, its leases renewed.

A received message is held under a lease until it is acknowledged, released or dead-lettered.
The worker's housekeeping thread flushes the batched acks (``Acker``) and renews the leases of
held messages before they run out (``extend_leases``), never past the longest time a task may
run (``Held.deadline``): a task stuck beyond it gets its message back to the broker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery
from cloudq.claimcheck import acknowledge
from cloudq.control.events import TaskInfo, peek
from cloudq.logsafe import get_logger

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.worker.leases")

ACK_FLUSH_SECONDS = 0.05
"""Acks wait at most this long to be batched (one DeleteMessageBatch instead of ten calls)."""
LEASE_RENEW_SHARE = 0.5
"""A held message's lease is renewed once less than this share of it is left; a finished
task's ack with less than this left goes out at once instead of waiting for a batch."""


@dataclass(slots=True)
class Held:
    """One message a worker holds: prefetched (``started`` None) or running in a slot."""

    delivery: Delivery
    started: float | None = None
    deadline: float | None = None
    """Monotonic time past which its lease is no longer renewed."""
    info: TaskInfo | None = None
    executor: Any = None
    """The slot's executor and thread running it, once started (``terminate``)."""
    thread: int | None = None

    def task(self) -> TaskInfo:
        """What the delivery is (read once, on first need: only monitoring asks)."""
        if self.info is None:
            self.info = peek(self.delivery)
        return self.info


class Acker:
    """Batches acknowledgements per queue; flushed by the worker's housekeeping thread.

    A delivery whose lease is already in its second half (a heartbeat would be due) is acked at
    once, with whatever is pending, instead of waiting for the flush: a housekeeping thread held
    up by a slow call must not let a finished task's lease lapse, running it a second time.
    A claim-checked body is deleted only after its batch's ack succeeded (a ``QueuedAck``).
    """

    drops_parked = True
    """``settle`` leaves parked bodies to ``flush``, which deletes them after the ack."""

    def __init__(self, app: App, lease: float) -> None:
        self.app = app
        self._short = lease * LEASE_RENEW_SHARE
        self._pending: dict[str, list[Delivery]] = {}
        self._lock = threading.Lock()
        self.due = threading.Event()
        """Set while acks are pending: wakes the housekeeping thread to flush them."""

    def __call__(self, delivery: Delivery) -> None:
        with self._lock:
            if not self._pending:
                self.due.set()
            self._pending.setdefault(delivery.queue, []).append(delivery)
            full = len(self._pending[delivery.queue]) >= self.app.broker.limits.max_batch
        left = delivery.leased_until - self.app.clock.monotonic()
        if left <= 0:
            logger.warning(
                "task %s finished %.1fs after its lease ran out: the broker may already have "
                "handed it to another worker, which runs it again (raise queue_lease_seconds if "
                "this repeats)",
                peek(delivery).id,
                -left,
            )
        if full or left < self._short:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self.due.clear()
        batch = self.app.broker.limits.max_batch
        for deliveries in pending.values():
            for start in range(0, len(deliveries), batch):
                try:
                    acknowledge(self.app, deliveries[start : start + batch], self.app.broker.ack)
                except Exception:
                    logger.exception(
                        "ack of %d message(s) failed; they will be redelivered",
                        len(deliveries[start : start + batch]),
                    )


def leases_due(held: Iterable[Held], lease: float, now: float) -> list[Delivery]:
    """The held messages whose lease is in its last ``LEASE_RENEW_SHARE`` and whose task may
    still be running (``deadline`` not passed)."""
    return [
        h.delivery
        for h in held
        if h.delivery.leased_until - now < lease * LEASE_RENEW_SHARE
        and (h.deadline is None or now < h.deadline)
    ]


def extend_leases(app: App, due: Iterable[Delivery], lease: float) -> None:
    """Renew ``due`` for ``lease`` seconds, per queue in the broker's batches; a failed call is
    logged (the next round tries again)."""
    by_queue: dict[str, list[Delivery]] = {}
    for d in due:
        by_queue.setdefault(d.queue, []).append(d)
    batch = app.broker.limits.max_batch
    for deliveries in by_queue.values():
        for start in range(0, len(deliveries), batch):
            chunk = deliveries[start : start + batch]
            try:
                # The broker moves each ``leased_until``, from a time taken before its call:
                # one taken after it would overstate the lease by the call's duration.
                app.broker.extend(chunk, lease)
            except Exception:
                logger.exception("lease extension failed for %d message(s)", len(chunk))


def lease_for(app: App) -> float:
    """The lease a worker takes: ``queue_lease_seconds``, within the broker's cap."""
    cap = app.broker.limits.max_lease_seconds
    lease = app.conf.queue_lease_seconds
    return lease if cap is None else min(lease, cap)


__all__ = [
    "ACK_FLUSH_SECONDS",
    "LEASE_RENEW_SHARE",
    "Acker",
    "Held",
    "extend_leases",
    "lease_for",
    "leases_due",
]
