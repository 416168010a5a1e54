"""Rate limits across every worker and handler: a schedule of slots in the shared store.

Each task name has a "theoretical arrival time" (GCRA): a task over the limit reserves the next
free slot and is deferred to it, so N workers together run at most the rate, evenly spaced,
without busy-waiting, dropping, or counting the wait as an attempt. A deferred task keeps its
reserved slot in a header and runs when it comes back. The slots live where the result backend
lives (Redis: one Lua call per task, timed by the Redis server's clock). With no shared store a
worker or handler refuses to start (``cloudq.stores.requirements``); ``LocalRateLimiter`` is left
for what runs tasks outside them (a direct ``execute``), and says so once in the log. The
notation (``"10/s"``) is parsed here too (``parse_rate_limit``).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from cloudq.errors import ConfigurationError
from cloudq.logsafe import get_logger

logger = get_logger("cloudq.rate_limits")

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_UNIT_SECONDS |= {"h": 3600, "hour": 3600}


@dataclass(frozen=True)
class RateLimit:
    """``count`` tasks per ``per_seconds``."""

    count: float
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds


def parse_rate_limit(text: str) -> RateLimit:
    """Celery's notation: ``"10/s"``, ``"100/m"``, ``"1000/h"``."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"rate limit {text!r} is not of the form N/s, N/m or N/h with N > 0 (e.g. '10/s')"
        )
    return RateLimit(float(match.group(1)), _UNIT_SECONDS[match.group(2)])


RATE_SLOT_HEADER = "cloudq-rate-slot"


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
