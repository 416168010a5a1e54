"""The claims of ``idempotent=True`` tasks: one execution of a task id at a time.

Claims are keys with a time to live: the first ``claim`` of a key wins until the ttl ends or
it is given back. Used by ``cloudq.idempotency``; without it a worker or serverless handler
with an idempotent task refuses to start (``cloudq.stores.requirements``): two deliveries of a
running one could both run.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["ClaimStore"]


@runtime_checkable
class ClaimStore(Protocol):
    """The part of a shared store the guard uses (beat's claims: redis://, dynamodb://, ...)."""

    def claim(self, key: str, ttl_seconds: float) -> bool: ...

    def unclaim(self, key: str) -> None: ...
