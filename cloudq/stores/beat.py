"""What beat instances share: one send per tick, whichever instance ticks.

Used by ``cloudq.beat``; a result backend without it stops ``cloudq beat`` at start
(``cloudq.stores.requirements``). With no result backend at all each beat sends its own ticks
(``LocalBeatStore``, with a warning), so run only one.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["BeatStore"]


@runtime_checkable
class BeatStore(Protocol):
    """What beats share: an atomic claim, and a marker of the last tick sent per entry."""

    def claim(self, key: str, ttl_seconds: float) -> bool:
        """True for exactly one caller per ``key`` (until ``ttl_seconds`` pass)."""
        ...

    def unclaim(self, key: str) -> None:
        """Give a claim back (its send failed), so the tick is tried again."""
        ...

    def get_marker(self, key: str) -> str | None: ...

    def set_marker(self, key: str, value: str) -> None: ...
