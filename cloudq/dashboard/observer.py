"""What the dashboard remembers between page loads: recent tasks and the last hour's counts.

Where the store keeps an event stream (Redis, memory) a thread follows it from the oldest event
the store still holds, so recent tasks and the throughput chart start with what the store knew
before the dashboard did. Where it keeps none (DynamoDB, Firestore, Azure Tables) the chart is
made from the workers' heartbeat counters, sampled on each refresh: it covers only the time the
dashboard has been running, and the pages say so.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cloudq.control.commands import live_workers
from cloudq.control.events import Monitor
from cloudq.control.store import find_control_store, find_event_store
from cloudq.logsafe import get_logger
from cloudq.stores.events import EventStore

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.dashboard.observer")

HISTORY_SECONDS = 3600
"""The chart's window: the last hour."""
BUCKET_SECONDS = 60
RECENT_TASKS = 200
"""Tasks listed on the Tasks page (the Monitor forgets older ones)."""
OLDEST_CURSOR = "0"
"""``events_read`` from the oldest event kept: a valid id for Redis streams and the memory store."""
READ_BATCH = 500
RETRY_SECONDS = 2.0
FAILED_TYPES = frozenset({"task-failed"})


class Buckets:
    """Succeeded and failed counts per minute, for the last hour."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: OrderedDict[int, list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, timestamp: float, succeeded: int = 0, failed: int = 0) -> None:
        now = self._clock()
        if timestamp < now - HISTORY_SECONDS or timestamp > now + BUCKET_SECONDS:
            return
        minute = int(timestamp // BUCKET_SECONDS) * BUCKET_SECONDS
        with self._lock:
            counts = self._counts.setdefault(minute, [0, 0])
            counts[0] += succeeded
            counts[1] += failed

    def series(self) -> dict[str, list[int]]:
        """Every minute of the last hour (zeros included), oldest first."""
        now = int(self._clock() // BUCKET_SECONDS) * BUCKET_SECONDS
        minutes = list(range(now - HISTORY_SECONDS + BUCKET_SECONDS, now + 1, BUCKET_SECONDS))
        with self._lock:
            for old in [m for m in self._counts if m < minutes[0]]:
                del self._counts[old]
            counts = [self._counts.get(m, [0, 0]) for m in minutes]
        return {
            "t": minutes,
            "succeeded": [c[0] for c in counts],
            "failed": [c[1] for c in counts],
        }


class Observer:
    """Follows the event stream in a thread (see the module docstring); ``close`` stops it."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.monitor = Monitor(max_tasks=RECENT_TASKS)
        self.buckets = Buckets()
        self.stream: EventStore | None = find_event_store(app)
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_counts: dict[str, tuple[int, int]] = {}

    @property
    def has_events(self) -> bool:
        return self.stream is not None

    def start(self) -> None:
        if self.stream is not None and self._thread is None:
            self._thread = threading.Thread(
                target=self._follow, name="cloudq-dashboard-events", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _follow(self) -> None:
        assert self.stream is not None
        cursor = OLDEST_CURSOR
        while not self._stop.is_set():
            try:
                cursor, lines = self.stream.events_read(cursor, 1.0, READ_BATCH)
            except Exception as exc:  # noqa: BLE001 - shown on the pages; tried again
                self.error = f"the event stream cannot be read: {type(exc).__name__}: {exc}"
                logger.warning("%s", self.error)
                self._stop.wait(RETRY_SECONDS)
                continue
            self.error = None
            for line in lines:
                self.apply_line(line)

    def apply_line(self, line: str) -> None:
        """One event from the stream: untrusted (any worker or producer wrote it), never raises."""
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                return
            with self._lock:
                self.monitor.apply(event)
            kind = event.get("type")
            if not isinstance(event.get("uuid"), str):  # not a task event (the Monitor agrees)
                return
            if kind == "task-succeeded":
                self.buckets.add(float(event["timestamp"]), succeeded=1)
            elif kind in FAILED_TYPES:
                self.buckets.add(float(event["timestamp"]), failed=1)
        except Exception as exc:  # noqa: BLE001 - a bad event is skipped, the others go on
            logger.debug("skipped an event the dashboard cannot read: %s", exc)

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = sorted(self.monitor.tasks.values(), key=lambda r: r.updated, reverse=True)
            return [dict(vars(r)) for r in rows[:RECENT_TASKS]]

    def task(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.monitor.tasks.get(task_id)
            return dict(vars(row)) if row is not None else None

    def sample_heartbeats(self) -> None:
        """Without events: add the growth of each worker's processed/failed counters since the
        last sample (a restarted worker's counters start again at 0: its first sample is a
        baseline)."""
        if self.has_events:
            return
        try:
            store = find_control_store(self.app)
            records = live_workers(store) if store is not None else {}
        except Exception as exc:  # noqa: BLE001 - the Workers page shows the error
            logger.debug("no heartbeat sample: %s", exc)
            return
        now = time.time()
        for host, record in records.items():
            try:
                processed, failed = int(record.get("processed", 0)), int(record.get("failed", 0))
            except (TypeError, ValueError):
                continue
            before = self._last_counts.get(host)
            self._last_counts[host] = (processed, failed)
            if before is None or processed < before[0] or failed < before[1]:
                continue
            grown_failed = failed - before[1]
            grown_ok = max(0, processed - before[0] - grown_failed)
            self.buckets.add(now, succeeded=grown_ok, failed=grown_failed)
