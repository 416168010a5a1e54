"""Events (Celery's names and fields): emitted by workers into the store's stream while enabled.

A disabled sink costs one boolean check per emit point; an enabled one appends to a buffer that
the worker's control thread flushes in one round trip, so task threads never wait on the store.

Types: ``task-sent``, ``task-received``, ``task-started``, ``task-succeeded``, ``task-failed``,
``task-retried``, ``task-dead-lettered``, ``task-deferred``, ``task-revoked``,
``worker-online``, ``worker-heartbeat``, ``worker-offline``. Every event has ``type``,
``hostname`` and ``timestamp`` (epoch seconds); task events have ``uuid`` and ``name``.
Arguments are never included: they may hold personal data.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cloudq.control.store import EVENTS_MAXLEN, find_control_store, find_event_store
from cloudq.logsafe import get_logger
from cloudq.stores.events import EventStore

if TYPE_CHECKING:
    from cloudq.adapters.base import Delivery
    from cloudq.app import App
    from cloudq.envelope import Envelope
    from cloudq.outcome import Outcome

logger = get_logger("cloudq.control.events")

TASK_HEADER = "cloudq-task"
"""Message attribute naming the task (set by the producer): tells a parked body's task."""
RESULT_REPR_CHARS = 200
"""Results in events are short reprs, as in Celery: a monitor, not a result store."""
MAX_BUFFER = 10_000
"""Events kept while the store is unreachable; older ones are dropped first."""


@dataclass(frozen=True)
class TaskInfo:
    """What a monitor shows of a delivery, read without verifying or running it."""

    id: str
    name: str
    attempt: int | None
    queue: str
    eta: str | None = None


def peek(delivery: Delivery) -> TaskInfo:
    """The task id, name and attempt of a delivery; the message id where the body is not an
    envelope (parked in claim-check storage, or malformed)."""
    name = delivery.attributes.get(TASK_HEADER, "?")
    try:
        raw = json.loads(delivery.body)
    except ValueError:
        raw = None
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        attempt = raw.get("attempt", 1)
        return TaskInfo(
            id=raw["id"],
            name=str(raw.get("task", name)),
            attempt=attempt if isinstance(attempt, int) else None,
            queue=delivery.queue,
            eta=raw.get("eta") if isinstance(raw.get("eta"), str) else None,
        )
    return TaskInfo(id=delivery.message_id, name=name, attempt=None, queue=delivery.queue)


def not_yet_due(info: TaskInfo, now: datetime) -> datetime | None:
    """The eta if it is still ahead (the run will be a deferral, not a start), else None."""
    if info.eta is None:
        return None
    try:
        eta = datetime.fromisoformat(info.eta)
    except ValueError:
        return None
    if eta.tzinfo is None:
        eta = eta.replace(tzinfo=UTC)
    return eta if eta > now else None


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= RESULT_REPR_CHARS else text[: RESULT_REPR_CHARS - 3] + "..."


def make_event(kind: str, hostname: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "hostname": hostname, "timestamp": time.time(), **fields}


def outcome_events(info: TaskInfo, outcome: Outcome, runtime: float | None) -> list[dict[str, Any]]:
    """The events for a settled outcome (without hostname and timestamp)."""
    from cloudq.outcome import Ack, DeadLetter, Defer, RetryAt
    from cloudq.results.base import State

    base: dict[str, Any] = {"uuid": info.id, "name": info.name, "attempt": info.attempt}
    match outcome:
        case Ack(result=result, value=value):
            if result is not None and result.state == State.REVOKED:
                reason = result.error.message if result.error else "revoked"
                expired = result.error is not None and result.error.type.endswith("TaskExpired")
                return [{"type": "task-revoked", **base, "expired": expired, "reason": reason}]
            if result is not None and result.state == State.FAILURE and result.error:
                exc = f"{result.error.type}: {result.error.message}"
                return [{"type": "task-failed", **base, "exception": exc, "traceback": ""}]
            shown = value if value is not None or result is None else result.result
            return [
                {"type": "task-succeeded", **base, "result": short_repr(shown), "runtime": runtime}
            ]
        case RetryAt(when=when, result=result):
            error = result.error if result is not None else None
            return [
                {
                    "type": "task-retried",
                    **base,
                    "exception": f"{error.type}: {error.message}" if error else "",
                    "traceback": error.traceback if error else "",
                    "eta": when.isoformat(),
                }
            ]
        case DeadLetter(reason=reason, envelope=envelope):
            from cloudq.envelope import HEADER_ERROR_TRACEBACK

            trace = envelope.headers.get(HEADER_ERROR_TRACEBACK, "") if envelope else ""
            return [
                {"type": "task-failed", **base, "exception": reason, "traceback": trace},
                {"type": "task-dead-lettered", **base, "reason": reason, "queue": info.queue},
            ]
        case Defer(until=until):
            return [{"type": "task-deferred", **base, "until": until.isoformat()}]
    return []


class EventSink:
    """A process's events on their way to the store: buffered, flushed by the caller's thread."""

    def __init__(self, store: EventStore | None, hostname: str, enabled: bool = False) -> None:
        self.store = store
        self.hostname = hostname
        self._enabled = enabled and store is not None
        self._buffer: list[str] = []
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def enable(self, on: bool) -> bool:
        """Switch events on or off; False if there is no stream to send them to."""
        if on and self.store is None:
            return False
        self._enabled = on
        return True

    def emit(self, kind: str, **fields: Any) -> None:
        if not self._enabled:
            return
        line = json.dumps(make_event(kind, self.hostname, **fields), default=str)
        with self._lock:
            self._buffer.append(line)
            if len(self._buffer) > MAX_BUFFER:
                del self._buffer[: len(self._buffer) - MAX_BUFFER]

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def flush(self) -> None:
        """Append the buffered events in one call; on failure they are kept for the next one."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch or self.store is None:
            return
        try:
            self.store.events_append(batch, EVENTS_MAXLEN)
        except Exception:
            with self._lock:
                self._buffer[:0] = batch
                del self._buffer[: max(0, len(self._buffer) - MAX_BUFFER)]
            raise


SENT_CHECK_SECONDS = 10.0
"""How long a producer trusts its last look at whether any worker has events on."""
_sent_checks: dict[int, tuple[float, bool]] = {}


def _events_wanted(app: App) -> bool:
    """Whether any live worker has events on; read at most once per ``SENT_CHECK_SECONDS``."""
    now = time.monotonic()
    cached = _sent_checks.get(id(app))
    if cached is not None and cached[0] > now:
        return cached[1]
    control = find_control_store(app)
    wanted = False
    if control is not None:
        for raw in control.control_workers().values():
            try:
                wanted = wanted or bool(json.loads(raw).get("events"))
            except (ValueError, AttributeError):
                continue
    _sent_checks[id(app)] = (now + SENT_CHECK_SECONDS, wanted)
    return wanted


def sent_fields(envelope: Envelope) -> dict[str, Any]:
    return {
        "uuid": envelope.id,
        "name": envelope.task,
        "queue": envelope.queue,
        "attempt": envelope.attempt,
        "eta": envelope.eta.isoformat() if envelope.eta else None,
    }


def emit_task_sent(
    app: App, sent: Sequence[Envelope | dict[str, Any]], hostname: str | None = None
) -> int:
    """Append ``task-sent`` events (for envelopes, or their ``sent_fields``) while any live
    worker has events on.

    For producers: whether events are on is read from the worker records at most once every
    ``SENT_CHECK_SECONDS``, so sending costs nothing extra in the stream while events are off.
    Never raises (a monitor must not fail a send); returns the number of events written.
    """
    try:
        stream = find_event_store(app)
        if stream is None or not sent or not _events_wanted(app):
            return 0
        host = hostname or f"{os.getpid()}@{socket.gethostname()}"
        lines = [
            json.dumps(
                make_event("task-sent", host, **(s if isinstance(s, dict) else sent_fields(s)))
            )
            for s in sent
        ]
        stream.events_append(lines, EVENTS_MAXLEN)
    except Exception as exc:  # noqa: BLE001 - the task was sent; only its event is lost
        logger.warning("could not write task-sent events: %s", exc)
        return 0
    return len(lines)


def follow(
    store: EventStore, duration: float | None = None, poll: float = 1.0
) -> Iterator[dict[str, Any] | None]:
    """Events from now on, as dicts; ``None`` after each quiet ``poll`` (a chance to redraw).
    Ends after ``duration`` seconds if given."""
    end = None if duration is None else time.monotonic() + duration
    cursor: str | None = None
    while True:
        wait = poll if end is None else max(0.0, min(poll, end - time.monotonic()))
        cursor, lines = store.events_read(cursor, wait, 500)
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                logger.warning("skipped an event that is not JSON: %.80s", line)
                continue
            if isinstance(event, dict):
                yield event
        if not lines:
            yield None
        if end is not None and time.monotonic() >= end:
            return


@dataclass
class TaskRow:
    uuid: str
    name: str = "?"
    state: str = "PENDING"
    hostname: str = ""
    attempt: int | None = None
    received: float | None = None
    runtime: float | None = None
    info: str = ""
    updated: float = 0.0


_STATES = {
    "task-sent": "PENDING",
    "task-received": "RECEIVED",
    "task-started": "STARTED",
    "task-succeeded": "SUCCESS",
    "task-failed": "FAILURE",
    "task-retried": "RETRY",
    "task-dead-lettered": "FAILURE",
    "task-deferred": "DEFERRED",
    "task-revoked": "REVOKED",
}


@dataclass
class Monitor:
    """The state ``cloudq events`` draws: tasks by id and workers by hostname, from events."""

    max_tasks: int = 20
    tasks: dict[str, TaskRow] = field(default_factory=dict)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: int = 0

    def apply(self, event: dict[str, Any]) -> None:
        self.seen += 1
        kind = str(event.get("type", ""))
        host = str(event.get("hostname", ""))
        if kind.startswith("worker-"):
            online = kind != "worker-offline"
            self.workers[host] = {**event, "online": online}
            return
        uuid = event.get("uuid")
        if not isinstance(uuid, str) or kind not in _STATES:
            return
        row = self.tasks.get(uuid) or TaskRow(uuid)
        self.tasks[uuid] = row
        row.name = str(event.get("name") or row.name)
        if not (kind == "task-dead-lettered" and row.state == "FAILURE"):
            row.state = _STATES[kind]
        row.hostname = host or row.hostname
        row.attempt = event.get("attempt", row.attempt)
        row.updated = float(event.get("timestamp", time.time()))
        if kind == "task-received":
            row.received = row.updated
        if kind == "task-succeeded":
            row.runtime = event.get("runtime")
            row.info = str(event.get("result", ""))
        elif kind in ("task-failed", "task-retried", "task-dead-lettered"):
            row.info = str(event.get("exception") or event.get("reason") or "")
        if len(self.tasks) > self.max_tasks * 5:  # forget the oldest: a long watch stays small
            for old in sorted(self.tasks.values(), key=lambda r: r.updated)[: self.max_tasks]:
                del self.tasks[old.uuid]

    def latest(self) -> list[TaskRow]:
        return sorted(self.tasks.values(), key=lambda r: r.updated, reverse=True)[: self.max_tasks]


def clock_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).astimezone().strftime("%H:%M:%S")


def watch(app: App, stream: Iterator[dict[str, Any] | None], refresh: float) -> None:
    """``cloudq events``' screen: the workers and the latest tasks, redrawn in place every
    ``refresh`` seconds on a terminal, printed on each change otherwise."""
    import click

    from cloudq.control.commands import live_workers
    from cloudq.control.output import ago, on_terminal, table

    monitor = Monitor()
    store = find_control_store(app)
    tty = sys.stdout.isatty() and on_terminal()
    last_drawn, last_text = 0.0, ""
    for event in stream:
        if event is not None:
            monitor.apply(event)
        now = time.monotonic()
        if event is not None and now - last_drawn < refresh:
            continue
        last_drawn = now
        records = live_workers(store) if store is not None else {}
        worker_rows = [
            [
                h,
                "online",
                r.get("active_count", 0),
                r.get("processed", 0),
                r.get("failed", 0),
                "on" if r.get("events") else "off",
                ago(r.get("timestamp")),
            ]
            for h, r in records.items()
        ] or [
            [h, "online" if e.get("online") else "offline", e.get("active"), None, None, "on", ""]
            for h, e in monitor.workers.items()
        ]
        task_rows = [
            [
                t.uuid,
                t.name,
                t.state,
                t.hostname,
                t.attempt,
                clock_time(t.received),
                t.runtime,
                t.info[:60],
            ]
            for t in monitor.latest()
        ]
        text = "\n".join(
            [
                f"cloudq events: {len(worker_rows)} worker(s), {monitor.seen} event(s)",
                "",
                table(
                    ["WORKER", "STATUS", "ACTIVE", "PROCESSED", "FAILED", "EVENTS", "SEEN"],
                    worker_rows,
                ),
                "",
                table(
                    ["UUID", "NAME", "STATE", "WORKER", "ATTEMPT", "RECEIVED", "RUNTIME", "INFO"],
                    task_rows,
                ),
            ]
        )
        if tty:
            click.clear()
            click.echo(text + "\n\n(Ctrl-C to quit)")
        elif text != last_text:
            click.echo(text + "\n")
        last_text = text
