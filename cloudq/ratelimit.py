"""Rate limits across every worker and handler: a schedule of slots in the shared store.

Each task name has a "theoretical arrival time" (GCRA): a task over the limit reserves the next
free slot and is deferred to it, so N workers together run at most the rate, evenly spaced,
without busy-waiting, dropping, or counting the wait as an attempt. A deferred task keeps its
reserved slot in a header and runs when it comes back. The slots live where the result backend
lives (Redis: one Lua call per task, timed by the Redis server's clock). With no shared store,
each worker limits itself alone, and says so once in the log.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

from cloudq.logsafe import get_logger

logger = get_logger("cloudq.ratelimit")

RATE_SLOT_HEADER = "cloudq-rate-slot"


@runtime_checkable
class RateLimiter(Protocol):
    def reserve(self, key: str, interval: float) -> float:
        """Reserve the next slot for ``key`` (slots ``interval`` seconds apart); return the
        seconds until it (0 when it is now)."""
        ...


class LocalRateLimiter:
    """GCRA in this process: exact for one worker, per worker when there are several."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, interval: float) -> float:
        now = time.monotonic()
        with self._lock:
            slot = max(self._next.get(key, now), now)
            self._next[key] = slot + interval
        return slot - now
