"""Rate-limit slots across workers: the next free slot of a task name (GCRA).

Used by ``cloudq.rate_limits``; without it a worker or serverless handler with a rate-limited
task refuses to start (``cloudq.stores.requirements``): each would limit itself alone.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["RateLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """One schedule of slots per key, shared by every worker and handler."""

    def reserve(self, key: str, interval: float) -> float:
        """Reserve the next slot for ``key`` (slots ``interval`` seconds apart); return the
        seconds until it (0 when it is now)."""
        ...
