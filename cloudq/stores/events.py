"""The event stream ``cloudq events`` and the dashboard follow.

Without it ``-E`` and ``enable_events`` are refused with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["EventStore"]


@runtime_checkable
class EventStore(Protocol):
    """An append-only, capped stream of events (JSON strings)."""

    def events_append(self, events: Sequence[str], maxlen: int) -> None:
        """Append in order; keep about the latest ``maxlen``."""
        ...

    def events_read(self, cursor: str | None, timeout: float, count: int) -> tuple[str, list[str]]:
        """Events after ``cursor`` (None: from now on), waiting up to ``timeout`` seconds for the
        first; returns the cursor to continue from and at most ``count`` events."""
        ...
