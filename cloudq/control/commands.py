"""What ``status``, ``inspect`` and ``control`` do: read worker records, send commands, wait for
the replies the workers put in their next record."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudq.control.store import COMMAND_TTL_SECONDS
from cloudq.logsafe import get_logger
from cloudq.revoke import RevokedIds
from cloudq.stores.control import ControlStore

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.control.commands")

CONTROL_COMMANDS = ("enable_events", "disable_events", "shutdown", "pool_grow", "pool_shrink")
INSPECT_METHODS = (
    "active",
    "reserved",
    "scheduled",
    "registered",
    "stats",
    "active_queues",
    "ping",
    "revoked",
)
REPLY_POLL_SECONDS = 0.2


def live_workers(store: ControlStore) -> dict[str, dict[str, Any]]:
    """Live records by hostname, sorted; a record that is not JSON is skipped with a warning."""
    out: dict[str, dict[str, Any]] = {}
    for worker_id, raw in sorted(store.control_workers().items()):
        try:
            record = json.loads(raw)
        except ValueError:
            logger.warning("skipped the control record of %s: not JSON", worker_id)
            continue
        if isinstance(record, dict):
            out[worker_id] = record
    return out


def select(
    workers: dict[str, dict[str, Any]],
    destination: Sequence[str] | None,
    serverless: bool = True,
) -> dict[str, dict[str, Any]]:
    """Workers named in ``destination`` (full ``name@host`` or the name alone), or all."""
    chosen = {w: r for w, r in workers.items() if serverless or r.get("kind", "worker") == "worker"}
    if not destination:
        return chosen
    wanted = set(destination)
    return {w: r for w, r in chosen.items() if w in wanted or w.split("@", 1)[0] in wanted}


@dataclass(frozen=True)
class Reply:
    hostname: str
    ok: bool | None
    """None: no reply within the timeout."""
    reply: str


def default_timeout(targets: dict[str, dict[str, Any]]) -> float:
    """Long enough for the slowest target's next heartbeat, which reads the command."""
    freq = max((float(r.get("freq", 5.0)) for r in targets.values()), default=5.0)
    return freq * 1.5 + 2.0


def send_command(
    store: ControlStore,
    name: str,
    targets: dict[str, dict[str, Any]],
    args: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> list[Reply]:
    """Put the command in each target's inbox, then wait for each reply in its record.

    A target whose record disappears after a ``shutdown`` has stopped: that is its reply.
    """
    cid = uuid.uuid4().hex
    command = json.dumps({"id": cid, "name": name, "args": args or {}, "sent_at": time.time()})
    for worker_id in targets:
        store.control_send(worker_id, command, COMMAND_TTL_SECONDS)
    deadline = time.monotonic() + (default_timeout(targets) if timeout is None else timeout)
    replies: dict[str, Reply] = {}
    while True:
        records = live_workers(store)
        for worker_id in targets:
            if worker_id in replies:
                continue
            record = records.get(worker_id)
            answer = (record or {}).get("replies", {}).get(cid)
            if isinstance(answer, dict):
                replies[worker_id] = Reply(worker_id, bool(answer.get("ok")), str(answer["reply"]))
            elif record is None and name == "shutdown":
                replies[worker_id] = Reply(worker_id, True, "stopped")
        if len(replies) == len(targets) or time.monotonic() >= deadline:
            break
        time.sleep(REPLY_POLL_SECONDS)
    return [replies.get(w) or Reply(w, None, "no reply in time") for w in targets]


def inspect_view(method: str, record: dict[str, Any]) -> Any:
    """The part of a record ``inspect <method>`` shows (``ping`` is a command round trip)."""
    if method == "active":
        return record.get("active", [])
    if method == "reserved":
        return record.get("reserved", [])
    if method == "scheduled":
        return []  # the broker holds tasks with an eta, never a worker
    if method == "registered":
        return record.get("registered", [])
    if method == "revoked":
        return record.get("revoked", [])
    if method == "active_queues":
        return [{"name": q} for q in record.get("queues", [])]
    if method == "stats":
        keys = (
            "hostname",
            "kind",
            "host",
            "pid",
            "pool",
            "concurrency",
            "prefetch",
            "processed",
            "failed",
            "active_count",
            "reserved_count",
            "events",
            "freq",
            "started_at",
            "timestamp",
            "sw_ver",
            "loadavg",
            "queues",
            "invocations",
        )
        stats = {k: record[k] for k in keys if k in record}
        if "started_at" in record:
            stats["uptime"] = round(time.time() - float(record["started_at"]), 1)
        return stats
    raise ValueError(f"unknown inspect method {method!r}")


class Control:
    """``app.control``, Celery's remote control: for now ``revoke``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.revoked = RevokedIds()
        """The revoked ids this process knows (refreshed by the worker's heartbeat)."""

    def revoke(
        self,
        task_id: str | Sequence[str],
        terminate: bool = False,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> list[Reply]:
        """``cloudq.revoke.revoke``: record the ids as revoked, and stop them if ``terminate``."""
        from cloudq.revoke import revoke

        return revoke(self.app, task_id, terminate, wait=wait, timeout=timeout)
