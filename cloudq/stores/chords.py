"""Chord counters: which header task finished the header, exactly once.

Used through ``App.chord_store``: a backend without it refuses a chord with an error naming
the backends that have it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["ChordStore"]


@runtime_checkable
class ChordStore(Protocol):
    """What a backend needs for chords: an atomic count of finished header tasks."""

    def chord_start(
        self, chord_id: str, size: int, body: dict[str, Any], expires_seconds: float | None
    ) -> None:
        """Record a chord of ``size`` header tasks and the body signature to send at the end.
        A second start of a live chord leaves it as it is (a redelivered group hop re-sends its
        parts, which count once by index; a fired body never fires again)."""
        ...

    def chord_part_done(
        self, chord_id: str, index: int, result: Any
    ) -> tuple[dict[str, Any], list[Any]] | None:
        """Record header task ``index``'s result (idempotent). To exactly one caller, the one
        whose call completed the header, return the body and the results in order."""
        ...

    def chord_fail(self, chord_id: str) -> dict[str, Any] | None:
        """Mark the chord failed; return its body to the first caller only (for its errbacks)."""
        ...
