"""The worker's side of the control plane: its heartbeat record, its commands, its events.

The worker's housekeeping thread calls ``tick()`` every few milliseconds; store calls run on one
control thread of their own, so a slow or unreachable store never delays an acknowledgement or a
lease extension. Each beat writes the record (id, host, pid, queues, concurrency, active tasks,
counts, events flag, revoked ids) with a time to live, refreshes the revoked task ids from the
store (``cloudq.revoke``: the interval is how late a revoke is seen) and takes the commands
waiting in the worker's inbox (``revoke`` with terminate among them);
after handling commands it writes the record again at once, with the replies, so the CLI does not
wait a whole interval for them.

``serverless_heartbeat`` is the same record for a serverless handler, written at most once per
interval per container.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cloudq import revoke
from cloudq.adapters.urls import redact_url
from cloudq.control.events import EventSink, TaskInfo
from cloudq.control.store import (
    HEARTBEAT_SECONDS,
    HEARTBEAT_TTL_FACTOR,
    find_control_store,
    find_event_store,
)
from cloudq.logsafe import get_logger
from cloudq.stores.control import ControlStore

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.control.view import ControlledWorker

logger = get_logger("cloudq.control.heartbeat")

MAX_REPLIES = 20
"""Replies a record carries (newest last): enough for a burst of commands."""
REPLY_SECONDS = 120.0
"""A reply stays in the record this long; the CLI has read it by then."""
MAX_LISTED = 100
"""Active and reserved tasks listed in a record; the counts are always complete."""


def _version() -> str:
    from cloudq import __version__

    return __version__


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def task_entry(info: TaskInfo, started: float | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": info.id,
        "name": info.name,
        "attempt": info.attempt,
        "queue": info.queue,
    }
    if started is not None:
        entry["started"] = started
    if info.eta is not None:
        entry["eta"] = info.eta
    return entry


class WorkerControl:
    """Heartbeats, commands and events of one worker (see the module docstring)."""

    def __init__(self, worker: ControlledWorker, interval: float, events: bool) -> None:
        self.worker = worker
        self.interval = interval
        self.store: ControlStore | None = None
        self.events = EventSink(None, worker.hostname)
        self._want_events = events
        self._replies: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._next_beat = 0.0
        self._failing = False
        self._lock = threading.Lock()
        self.started_at = time.time()

    @property
    def ttl(self) -> float:
        return self.interval * HEARTBEAT_TTL_FACTOR

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Find the store and write the first record at once (``status`` sees a ready worker)."""
        app = self.worker.app
        try:
            self.store = find_control_store(app)
            self.events = EventSink(find_event_store(app), self.worker.hostname)
        except Exception as exc:  # noqa: BLE001 - a broken backend must not stop the worker
            logger.warning("control plane off: the result backend cannot be opened (%s)", exc)
            return
        if self.store is None:
            logger.info(
                "no shared state store (result_backend %r): status, inspect and control will "
                "not see this worker",
                redact_url(app.conf.result_backend or ""),
            )
            return
        if self._want_events and not self.events.enable(True):
            logger.warning(
                "-E: result backend %r keeps no event stream",
                redact_url(app.conf.result_backend or ""),
            )
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cloudq-control")
        self.events.emit("worker-online", **self._worker_fields())
        self._beat_safely()

    def tick(self) -> None:
        """Called by the housekeeping thread: start a beat or an event flush when due."""
        if self._executor is None or (self._pending is not None and not self._pending.done()):
            return
        now = time.monotonic()
        if now >= self._next_beat:
            self._next_beat = now + self.interval
            self._pending = self._executor.submit(self._beat_safely)
        elif self.events.pending:
            self._pending = self._executor.submit(self._flush_safely)

    def close(self) -> None:
        """After a graceful stop: last events, and the record removed (``status`` drops it)."""
        if self._executor is None or self.store is None:
            return
        self._executor.shutdown(wait=True)
        self._executor = None
        self.events.emit("worker-offline", **self._worker_fields())
        try:
            self.events.flush()
            self.store.control_forget(self.worker.hostname)
        except Exception as exc:  # noqa: BLE001 - the record expires by itself anyway
            logger.warning("could not remove the worker's control record: %s", exc)

    # --- one beat -------------------------------------------------------------------------------
    def _beat_safely(self) -> None:
        try:
            self.beat()
        except Exception as exc:  # noqa: BLE001 - logged; the next beat tries again
            if not self._failing:
                logger.warning("heartbeat to the state store failed (%s); retrying", exc)
            self._failing = True
        else:
            if self._failing:
                logger.info("heartbeat to the state store works again")
            self._failing = False

    def _flush_safely(self) -> None:
        try:
            self.events.flush()
        except Exception as exc:  # noqa: BLE001 - kept in the buffer for the next flush
            logger.debug("event flush failed: %s", exc)

    def beat(self) -> None:
        store = self.store
        if store is None:
            return
        revoke.refresh(self.worker.app)  # the delay a revoke takes to be seen: one interval
        commands = store.control_heartbeat(self.worker.hostname, self.record_json(), self.ttl)
        if commands:
            for raw in commands:
                self.handle(raw)
            store.control_heartbeat(self.worker.hostname, self.record_json(), self.ttl)
        if self.events.enabled:
            w = self.worker
            self.events.emit(
                "worker-heartbeat",
                **self._worker_fields(),
                active=len(w.active_tasks()),
                processed=w.processed,
                failed=w.failed,
            )
        self.events.flush()

    def _worker_fields(self) -> dict[str, Any]:
        return {
            "freq": self.interval,
            "sw_ident": "cloudq",
            "sw_ver": _version(),
            "pid": os.getpid(),
            "loadavg": _loadavg(),
        }

    def record(self) -> dict[str, Any]:
        w = self.worker
        active = w.active_tasks()
        reserved = w.reserved_tasks()
        revoked = w.app.control.revoked
        cutoff = time.time() - REPLY_SECONDS
        with self._lock:
            for cid in [c for c, r in self._replies.items() if r["at"] < cutoff]:
                del self._replies[cid]
            replies = dict(self._replies)
        return {
            "hostname": w.hostname,
            "kind": "worker",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(w.queues),
            "pool": w.pool_kind,
            "concurrency": w.concurrency,
            "prefetch": w.prefetch,
            "active": active[:MAX_LISTED],
            "active_count": len(active),
            "reserved": reserved[:MAX_LISTED],
            "reserved_count": len(reserved),
            "processed": w.processed,
            "failed": w.failed,
            "events": self.events.enabled,
            "stopping": w.stopping,
            "freq": self.interval,
            "timestamp": time.time(),
            "started_at": self.started_at,
            "registered": sorted(w.app.tasks),
            "revoked": revoked.sorted()[:MAX_LISTED],
            "revoked_count": len(revoked),
            "sw_ver": _version(),
            "loadavg": _loadavg(),
            "replies": replies,
        }

    def record_json(self) -> str:
        return json.dumps(self.record(), default=str)

    # --- commands -------------------------------------------------------------------------------
    def handle(self, raw: str) -> None:
        """Run one command and keep its reply for the record."""
        try:
            command = json.loads(raw)
            cid, name = str(command["id"]), str(command["name"])
            args = command.get("args") or {}
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a control command that is not valid: %.200s", raw)
            return
        try:
            ok, reply = self._run(name, args)
        except Exception as exc:
            logger.exception("control command %s failed", name)
            ok, reply = False, f"{type(exc).__name__}: {exc}"
        logger.info("control: %s -> %s", name, reply)
        with self._lock:
            self._replies[cid] = {"ok": ok, "reply": reply, "at": time.time()}
            while len(self._replies) > MAX_REPLIES:
                self._replies.popitem(last=False)

    def _run(self, name: str, args: dict[str, Any]) -> tuple[bool, str]:
        w = self.worker
        if name == "ping":
            return True, "pong"
        if name == "shutdown":
            w.stop()
            return True, "shutdown requested: stopping after running tasks finish"
        if name in ("pool_grow", "pool_shrink"):
            n = int(args.get("n", 1))
            if n < 1:
                return False, "the number of slots must be at least 1"
            if name == "pool_grow":
                size = w.grow(n)
                return True, f"pool will grow to {size}"
            removed = w.shrink(n)
            if removed == 0:
                return False, f"pool is at its minimum ({w.concurrency})"
            return True, f"pool will shrink to {w.concurrency}"
        if name == revoke.REVOKE_COMMAND:
            ids = args.get("task_ids")
            if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
                return False, "revoke needs a list of task ids"
            w.app.control.revoked.add(ids)
            if not args.get("terminate"):
                return True, f"revoked {len(ids)} task id(s)"
            stopped = w.terminate(set(ids))
            listed = ", ".join(stopped) if stopped else "none running here"
            return True, f"revoked {len(ids)} task id(s); terminated: {listed}"
        if name in ("enable_events", "disable_events"):
            on = name == "enable_events"
            if not self.events.enable(on):
                return False, "the result backend keeps no event stream (use redis://)"
            return True, f"task events {'enabled' if on else 'disabled'}"
        return False, f"unknown control command {name!r}"


# --- serverless ---------------------------------------------------------------------------------
_serverless: dict[str, Any] = {"next": 0.0, "invocations": 0, "records": 0, "since": time.time()}
_serverless_lock = threading.Lock()


def serverless_heartbeat(app: App, platform: str, context: Any = None, records: int = 0) -> None:
    """Write this container's heartbeat, at most once per interval; never raises.

    For handlers: ``serverless_heartbeat(app, "lambda", context, len(records))`` at the start of
    each invocation. The id is the function and its container (Lambda: the log stream), so
    ``cloudq status`` lists warm containers; commands do not apply to them and are dropped.
    """
    with _serverless_lock:
        _serverless["invocations"] += 1
        _serverless["records"] += records
        now = time.monotonic()
        if now < _serverless["next"]:
            return
        _serverless["next"] = now + HEARTBEAT_SECONDS
        counts = dict(_serverless)
    try:
        store = find_control_store(app)
        if store is None:
            return
        function = str(getattr(context, "function_name", "") or app.main)
        instance = str(getattr(context, "log_stream_name", "") or f"{os.getpid()}")
        worker_id = f"{platform}:{function}:{instance}"
        record = {
            "hostname": worker_id,
            "kind": "serverless",
            "platform": platform,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": [],
            "concurrency": 1,
            "active": [],
            "active_count": 0,
            "processed": counts["records"],
            "invocations": counts["invocations"],
            "failed": 0,
            "events": False,
            "freq": HEARTBEAT_SECONDS,
            "timestamp": time.time(),
            "started_at": counts["since"],
            "registered": sorted(app.tasks),
            "sw_ver": _version(),
            "replies": {},
        }
        dropped = store.control_heartbeat(
            worker_id, json.dumps(record), HEARTBEAT_SECONDS * HEARTBEAT_TTL_FACTOR
        )
        if dropped:
            logger.info("dropped %d control command(s): none applies to %s", len(dropped), platform)
    except Exception as exc:  # noqa: BLE001 - a heartbeat never fails an invocation
        logger.warning("serverless heartbeat failed: %s", exc)
