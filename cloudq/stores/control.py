"""Heartbeat records and command inboxes: what ``status``, ``inspect`` and ``control`` read.

Used by ``cloudq.control``; without it workers run unseen (logged at start).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["ControlStore"]


@runtime_checkable
class ControlStore(Protocol):
    """Heartbeat records with a time to live, and a command inbox per worker."""

    def control_heartbeat(self, worker_id: str, record: str, ttl_seconds: float) -> list[str]:
        """Write the worker's record (live for ``ttl_seconds``) and take, atomically, the commands
        waiting for it, oldest first."""
        ...

    def control_workers(self) -> dict[str, str]:
        """The records of live workers by id."""
        ...

    def control_forget(self, worker_id: str) -> None:
        """Remove a worker's record and inbox (it stopped cleanly)."""
        ...

    def control_send(self, worker_id: str, command: str, ttl_seconds: float) -> None:
        """Append a command to the worker's inbox; dropped if unread after ``ttl_seconds``."""
        ...
