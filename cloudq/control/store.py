"""The control store contracts, found on the result backend as runtime-checkable Protocols.

The result backend doubles as the shared store (as it does for beat claims, rate slots and chord
counters): a backend that has these methods serves the control plane, one that has not makes the
commands say so. ``LocalControlStore`` is the in-process implementation the ``memory://`` backend
delegates to.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cloudq.adapters.urls import redact_url
from cloudq.clock import SYSTEM_CLOCK, Clock
from cloudq.errors import ConfigurationError
from cloudq.stores.control import ControlStore
from cloudq.stores.events import EventStore
from cloudq.stores.revoked import RevokeStore

if TYPE_CHECKING:
    from cloudq.app import App

HEARTBEAT_SECONDS = 5.0
"""How often a worker writes its record: a store write each time, so not every second."""
HEARTBEAT_TTL_FACTOR = 3
"""A record lives this many intervals: a worker that missed two beats is gone from ``status``."""
COMMAND_TTL_SECONDS = 120.0
"""A command not read within this time (its worker died) is dropped by the store."""
EVENTS_MAXLEN = 10_000
"""The event stream keeps about this many of the latest events (Redis ``MAXLEN ~``)."""
EVENTS_TTL_SECONDS = 86_400.0
"""An event stream nobody appends to any more disappears after this long."""


def _need_backend(app: App, what: str) -> object:
    backend = app.backend
    if backend is None:
        raise ConfigurationError(
            f"{what} needs a shared state store and none is set: set result_backend "
            "(App(backend='redis://...') or CLOUDQ_RESULT_BACKEND); workers write their "
            "heartbeats and events there"
        )
    return backend


def control_store(app: App, what: str = "this command") -> ControlStore:
    """The app's result backend as a control store, or a clear error naming the setting."""
    backend = _need_backend(app, what)
    if not isinstance(backend, ControlStore):
        raise ConfigurationError(
            f"{what} needs a shared state store, and result backend "
            f"{redact_url(app.conf.result_backend or '')!r} keeps no control records: set "
            "result_backend to redis://, dynamodb://, firestore://, azuretable:// or memory:// "
            "(one process)"
        )
    return backend


def event_store(app: App, what: str = "this command") -> EventStore:
    """The app's result backend as an event stream, or a clear error naming the setting."""
    backend = _need_backend(app, what)
    if not isinstance(backend, EventStore):
        raise ConfigurationError(
            f"{what} needs an event stream, and result backend "
            f"{redact_url(app.conf.result_backend or '')!r} "
            "keeps none (a stream costs too much there): set result_backend to redis:// "
            "(or memory:// in one process)"
        )
    return backend


def revoke_store(app: App, what: str = "revoke") -> RevokeStore:
    """The app's result backend as the store of revoked ids, or a clear error naming the
    setting."""
    backend = _need_backend(app, what)
    if not isinstance(backend, RevokeStore):
        raise ConfigurationError(
            f"{what} needs a shared state store, and result backend "
            f"{app.conf.result_backend!r} keeps no revoked ids: set result_backend to "
            "redis://, dynamodb://, firestore://, azuretable:// or memory:// (one process)"
        )
    return backend


def find_revoke_store(app: App) -> RevokeStore | None:
    """The store of revoked ids if the app has one; None (no error) for workers without."""
    backend = app.backend
    return backend if isinstance(backend, RevokeStore) else None


def find_control_store(app: App) -> ControlStore | None:
    """The control store if the app has one; None (no error) for workers that run without."""
    backend = app.backend
    return backend if isinstance(backend, ControlStore) else None


def find_event_store(app: App) -> EventStore | None:
    backend = app.backend
    return backend if isinstance(backend, EventStore) else None


class LocalControlStore:
    """Control records, inboxes, revoked ids and events of one process (``memory://``'s).

    Expiry follows the injected clock, so tests with a ``FakeClock`` see records expire exactly;
    ``events_read`` waits in real time.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._workers: dict[str, tuple[float, str]] = {}
        self._inboxes: dict[str, list[tuple[float, str]]] = {}
        self._events: deque[str] = deque(maxlen=EVENTS_MAXLEN)
        self._appended = 0
        self._revoked: dict[str, float] = {}

    def control_heartbeat(self, worker_id: str, record: str, ttl_seconds: float) -> list[str]:
        now = self._clock.monotonic()
        with self._cond:
            self._workers[worker_id] = (now + ttl_seconds, record)
            inbox = self._inboxes.pop(worker_id, [])
        return [command for expiry, command in inbox if expiry > now]

    def control_workers(self) -> dict[str, str]:
        now = self._clock.monotonic()
        with self._cond:
            for worker_id in [w for w, (expiry, _) in self._workers.items() if expiry <= now]:
                del self._workers[worker_id]
            return {w: record for w, (_, record) in self._workers.items()}

    def control_forget(self, worker_id: str) -> None:
        with self._cond:
            self._workers.pop(worker_id, None)
            self._inboxes.pop(worker_id, None)

    def control_send(self, worker_id: str, command: str, ttl_seconds: float) -> None:
        expiry = self._clock.monotonic() + ttl_seconds
        with self._cond:
            self._inboxes.setdefault(worker_id, []).append((expiry, command))

    def revoke_add(self, task_ids: Sequence[str], ttl_seconds: float) -> None:
        expiry = self._clock.monotonic() + ttl_seconds
        with self._cond:
            for task_id in task_ids:
                self._revoked[task_id] = expiry

    def revoke_list(self) -> list[str]:
        now = self._clock.monotonic()
        with self._cond:
            for task_id in [t for t, expiry in self._revoked.items() if expiry <= now]:
                del self._revoked[task_id]
            return list(self._revoked)

    def events_append(self, events: Sequence[str], maxlen: int) -> None:
        with self._cond:
            if self._events.maxlen != maxlen:
                self._events = deque(self._events, maxlen=maxlen)
            self._events.extend(events)
            self._appended += len(events)
            self._cond.notify_all()

    def events_read(self, cursor: str | None, timeout: float, count: int) -> tuple[str, list[str]]:
        end = time.monotonic() + timeout
        with self._cond:
            start = self._appended if cursor is None else int(cursor)
            while self._appended <= start:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return str(start), []
                self._cond.wait(remaining)
            first = self._appended - len(self._events)  # index of the oldest event kept
            skip = max(0, start - first)
            taken = list(self._events)[skip : skip + count]
            return str(max(start, first) + len(taken)), taken
