"""What a task's run measures, read off the hook bus: shared by the Prometheus exporter and the
serverless metric log lines, so both report the same names, labels and values.

Label values come from messages: the task label is a registered task's name (the hooks that
carry it only fire for one), and the queue label, which the sender writes, is capped at
``MAX_QUEUE_LABELS`` distinct values per process (the rest are ``OTHER``): a forged stream of
queue names must not grow a worker's memory or a monitoring bill without bound.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudq.envelope import Envelope

NAMESPACE = "cloudq"
TASKS = "tasks"
"""``cloudq_tasks_total{task,queue,outcome}``: tasks run, by how their run ended."""
DURATION = "task_duration_seconds"
"""A histogram of how long a task's body ran."""
QUEUE_LATENCY = "task_queue_latency_seconds"
"""A histogram of enqueue (or due time, for a delayed task) to start."""
DEAD_LETTERS = "dead_letters"
"""``cloudq_dead_letters_total{queue}``: messages moved to a dead-letter queue, tasks or not."""
IN_FLIGHT = "tasks_in_flight"
POOL_SIZE = "worker_pool_size"
BROKER_CALLS = "broker_calls"
"""``cloudq_broker_calls_total{call}``: receive and ack calls made to the broker."""
BROKER_MESSAGES = "broker_messages"
"""``cloudq_broker_messages_total{call}``: messages those calls received or acknowledged."""
LABELS = ("task", "queue")
MAX_QUEUE_LABELS = 100
OTHER = "<other>"
UNKNOWN_TASK = "<unregistered>"
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)


def outcome_label(state: object) -> str:
    """``State.SUCCESS`` -> ``success``."""
    return str(state).lower()


def queue_latency(envelope: Envelope, now: datetime | None = None) -> float:
    """Seconds from when the task was due (sent, or its eta) to ``now``; never negative."""
    due = envelope.created_at if envelope.eta is None else max(envelope.created_at, envelope.eta)
    return max(0.0, ((now or datetime.now(UTC)) - due).total_seconds())


class QueueLabels:
    """The queue label of an envelope, capped (see the module's docstring)."""

    def __init__(self, limit: int = MAX_QUEUE_LABELS) -> None:
        self._seen: set[str] = set()
        self._limit = limit
        self._lock = threading.Lock()

    def __call__(self, queue: str) -> str:
        if queue in self._seen:
            return queue
        with self._lock:
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(queue)
        return queue


class Runs:
    """Start times of the running tasks, per request (``before_execute`` to ``after_execute``
    run in one thread, but a thread pool runs several tasks at once)."""

    def __init__(self) -> None:
        self._began: dict[int, float] = {}

    def start(self, request: object) -> None:
        self._began[id(request)] = time.perf_counter()

    def stop(self, request: object) -> float | None:
        """Seconds since ``start(request)``, or None if it was not seen (added mid-run)."""
        began = self._began.pop(id(request), None)
        return None if began is None else time.perf_counter() - began


def task_label(app: Any, name: str) -> str:
    """``name`` if the app registered it, else ``UNKNOWN_TASK``."""
    return name if name in app.tasks else UNKNOWN_TASK
