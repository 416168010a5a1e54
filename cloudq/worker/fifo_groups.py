"""FIFO groups in a worker: one delivery of a group runs at a time, in the order received.

The first delivery of a group goes to the pool; the ones behind it wait here. When it ends, the
next one goes; when it is coming back later (deferred, or its outcome unknown), the rest of its
group is handed back to the broker too, so they run after it, in order, on whichever worker.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from cloudq.adapters.base import Delivery
from cloudq.logsafe import get_logger
from cloudq.outcome import Defer, Outcome

logger = get_logger("cloudq.worker.fifo_groups")


class FifoGroups:
    """The deliveries waiting behind their group's running one.

    ``lock`` is the worker's held-messages lock (the groups change with them); ``start`` queues
    a delivery for the pool; ``forget`` drops one from the held messages (caller holds
    ``lock``); ``release`` hands deliveries back to the broker, visible at once.
    """

    def __init__(
        self,
        lock: threading.RLock,
        start: Callable[[Delivery], None],
        forget: Callable[[Delivery], None],
        release: Callable[[Sequence[Delivery]], None],
    ) -> None:
        self._lock = lock
        self._start = start
        self._forget = forget
        self._release = release
        self._waiting: dict[str, deque[Delivery]] = {}
        """FIFO group -> its deliveries waiting behind the one that is queued or running."""

    def enqueue(self, delivery: Delivery) -> None:
        """Start ``delivery`` now, unless a delivery of its group is queued or running."""
        if delivery.group is None:
            self._start(delivery)
            return
        with self._lock:
            waiting = self._waiting.get(delivery.group)
            if waiting is None:
                self._waiting[delivery.group] = deque()
                self._start(delivery)
            else:
                waiting.append(delivery)

    def done(self, delivery: Delivery, outcome: Outcome | None) -> None:
        """Start the group's next delivery; if this one is coming back later (deferred, lost),
        hand the rest of its group back too so they run after it, in order."""
        if delivery.group is None:
            return
        with self._lock:
            waiting = self._waiting.get(delivery.group)
            if waiting is None:
                return
            if outcome is None or isinstance(outcome, Defer):
                rest = list(waiting)
                del self._waiting[delivery.group]
            elif waiting:
                self._start(waiting.popleft())
                return
            else:
                del self._waiting[delivery.group]
                return
            for d in rest:
                self._forget(d)
        if rest:
            try:
                self._release(rest)
            except Exception:
                logger.exception(
                    "could not release %d message(s) of group %s", len(rest), delivery.group
                )

    def drain(self) -> list[Delivery]:
        """Every waiting delivery, taken out (on stop: they are released, never started)."""
        with self._lock:
            waiting = [d for group in self._waiting.values() for d in group]
            for group in self._waiting.values():
                group.clear()
        return waiting
