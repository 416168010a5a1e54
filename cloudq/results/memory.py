"""``memory://`` results: a dict with expiry and change notification, shared per URL in-process."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cloudq.clock import Clock
from cloudq.control.store import LocalControlStore
from cloudq.results.base import TaskResult


@dataclass
class _Chord:
    size: int
    body: dict[str, Any]
    results: dict[int, Any] = field(default_factory=dict)
    fired: bool = False


class MemoryBackend:
    """Thread-safe; ``wait`` wakes on the store instead of polling."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._records: dict[str, tuple[float | None, TaskResult]] = {}
        self._cond = threading.Condition()
        self._chords: dict[str, _Chord] = {}
        self._slots: dict[str, float] = {}
        self._claims: dict[str, float] = {}
        """Claim key -> when it lapses (on ``clock.monotonic()``)."""
        self._markers: dict[str, str] = {}
        self._control = LocalControlStore(clock)

    def store(self, result: TaskResult, expires_seconds: float | None) -> None:
        expiry = None if expires_seconds is None else self._clock.monotonic() + expires_seconds
        with self._cond:
            self._records[result.task_id] = (expiry, result)
            self._cond.notify_all()

    def _get(self, task_id: str) -> TaskResult | None:
        entry = self._records.get(task_id)
        if entry is None:
            return None
        expiry, record = entry
        if expiry is not None and expiry <= self._clock.monotonic():
            del self._records[task_id]
            return None
        return record

    def get(self, task_id: str) -> TaskResult | None:
        with self._cond:
            return self._get(task_id)

    def wait(self, task_id: str, timeout: float | None) -> TaskResult | None:
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                record = self._get(task_id)
                if record is not None and record.ready:
                    return record
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return record
                self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))

    def forget(self, task_id: str) -> None:
        with self._cond:
            self._records.pop(task_id, None)

    def close(self) -> None:
        """Nothing to close."""

    # --- beat: claims and markers --------------------------------------------------------
    def claim(self, key: str, ttl_seconds: float) -> bool:
        now = self._clock.monotonic()
        with self._cond:
            until = self._claims.get(key)
            if until is not None and until > now:
                return False
            self._claims[key] = now + ttl_seconds
            return True

    def unclaim(self, key: str) -> None:
        with self._cond:
            self._claims.pop(key, None)

    def get_marker(self, key: str) -> str | None:
        with self._cond:
            return self._markers.get(key)

    def set_marker(self, key: str, value: str) -> None:
        with self._cond:
            self._markers[key] = value

    # --- rate limits: the memory backend is the shared store of one process ---------------
    def reserve(self, key: str, interval: float) -> float:
        now = self._clock.monotonic()
        with self._cond:
            slot = max(self._slots.get(key, now), now)
            self._slots[key] = slot + interval
        return slot - now

    # --- chords ------------------------------------------------------------------------
    def chord_start(
        self, chord_id: str, size: int, body: dict[str, Any], expires_seconds: float | None
    ) -> None:
        with self._cond:
            self._chords.setdefault(chord_id, _Chord(size, body))

    def chord_part_done(
        self, chord_id: str, index: int, result: Any
    ) -> tuple[dict[str, Any], list[Any]] | None:
        with self._cond:
            chord = self._chords.get(chord_id)
            if chord is None:
                return None
            chord.results[index] = result
            if len(chord.results) < chord.size or chord.fired:
                return None
            chord.fired = True
            return chord.body, [chord.results[i] for i in range(chord.size)]

    def chord_fail(self, chord_id: str) -> dict[str, Any] | None:
        with self._cond:
            chord = self._chords.get(chord_id)
            if chord is None or chord.fired:
                return None
            chord.fired = True
            return chord.body

    # --- control plane: heartbeats, command inboxes, events (one process) -------------------
    def control_heartbeat(self, worker_id: str, record: str, ttl_seconds: float) -> list[str]:
        return self._control.control_heartbeat(worker_id, record, ttl_seconds)

    def control_workers(self) -> dict[str, str]:
        return self._control.control_workers()

    def control_forget(self, worker_id: str) -> None:
        self._control.control_forget(worker_id)

    def control_send(self, worker_id: str, command: str, ttl_seconds: float) -> None:
        self._control.control_send(worker_id, command, ttl_seconds)

    def revoke_add(self, task_ids: Sequence[str], ttl_seconds: float) -> None:
        self._control.revoke_add(task_ids, ttl_seconds)

    def revoke_list(self) -> list[str]:
        return self._control.revoke_list()

    def events_append(self, events: Sequence[str], maxlen: int) -> None:
        self._control.events_append(events, maxlen)

    def events_read(self, cursor: str | None, timeout: float, count: int) -> tuple[str, list[str]]:
        return self._control.events_read(cursor, timeout, count)


_backends: dict[tuple[str, int], MemoryBackend] = {}
_lock = threading.Lock()


def open_memory_backend(url: str, clock: Clock) -> MemoryBackend:
    """The process-wide backend named by the URL's host part (per clock), made on first use.

    :param url: ``memory://NAME``; the same name (and clock) is the same backend.
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    parts = urlsplit(url)
    key = (parts.netloc + parts.path, id(clock))
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _backends[key] = MemoryBackend(clock)
        return backend
