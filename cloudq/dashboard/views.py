"""What the pages and the API show, read through ``cloudq.control``'s functions.

Each function is blocking (store and broker calls): the routes run them in a thread. Everything
returned that came from a message or a worker record is the sender's text: the templates escape
it (Jinja2 autoescape) and the API returns it as JSON.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cloudq.adapters.urls import redact_url
from cloudq.control.commands import Reply, inspect_view, live_workers, send_command
from cloudq.control.redrive import known_queues, queue_rows
from cloudq.control.store import control_store, find_event_store, find_revoke_store
from cloudq.dashboard.arguments import clipped
from cloudq.dashboard.jobs import Jobs
from cloudq.dashboard.observer import Observer
from cloudq.errors import CloudqError

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.dashboard.deadletters import DeadLetterRow
    from cloudq.results.base import TaskResult

WORKER_COMMANDS = ("shutdown", "pool_grow", "pool_shrink")
"""The control commands the Workers page offers (``cloudq control``'s, same names)."""
SEEN_ARGS = 1000
"""Arguments of dead letters listed lately, kept for their tasks' pages."""
NO_EVENTS_NOTE = (
    "This state store keeps no event stream (events need redis://, or memory:// in one "
    "process), so finished tasks cannot be listed: the list shows the tasks workers are running "
    "now; open any task by its id to read its stored result."
)
NO_ARGS_NOTE = (
    "not kept: results carry arguments only with result_extended=True, events never (they may "
    "hold personal data); a dead letter's arguments are shown once the Dead letters page has "
    "listed it, if its task sets report_args=True"
)
RELATED_READ = 20
"""Records read for one task page besides its own (parent, children, chain steps), at most."""


@dataclass
class Dash:
    """The dashboard's state: the app, the event follower, running jobs."""

    app: App
    extra_queues: list[str] = field(default_factory=list)
    observer: Observer = field(init=False)
    jobs: Jobs = field(default_factory=Jobs)
    _seen_args: OrderedDict[str, str] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.observer = Observer(self.app)

    def remember(self, rows: list[DeadLetterRow]) -> None:
        with self._lock:
            for row in rows:
                if row.info.task_id and row.args is not None:
                    self._seen_args[row.info.task_id] = row.args
                    self._seen_args.move_to_end(row.info.task_id)
            while len(self._seen_args) > SEEN_ARGS:
                self._seen_args.popitem(last=False)

    def seen_args(self, task_id: str) -> str | None:
        with self._lock:
            return self._seen_args.get(task_id)

    def queues(self) -> list[str]:
        return known_queues(self.app, self.extra_queues)


def about(app: App) -> dict[str, Any]:
    """The footer: where the dashboard reads from, secrets redacted."""
    return {
        "app": app.main,
        "broker": redact_url(app.conf.broker_url or ""),
        "backend": redact_url(app.conf.result_backend or "") or "(none)",
        "events": find_event_store(app) is not None,
        "signed": bool(app.signing_keys),
    }


def state_name(state: Any) -> str:
    return str(getattr(state, "value", state))


# --- workers ----------------------------------------------------------------------------------
def workers(app: App) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Live heartbeat records by hostname, or the reason there are none to read."""
    try:
        return live_workers(control_store(app, "the Workers page")), None
    except CloudqError as exc:
        return {}, str(exc)


def worker_api(record: dict[str, Any]) -> dict[str, Any]:
    """One worker as Flower's ``/api/workers`` shows it (from its heartbeat record)."""
    return {
        "kind": record.get("kind", "worker"),
        "stats": inspect_view("stats", record),
        "active": inspect_view("active", record),
        "reserved": inspect_view("reserved", record),
        "scheduled": inspect_view("scheduled", record),
        "registered": inspect_view("registered", record),
        "revoked": inspect_view("revoked", record),
        "active_queues": inspect_view("active_queues", record),
        "timestamp": record.get("timestamp"),
    }


def worker_command(app: App, hostname: str, command: str, n: int | None = None) -> Reply:
    """Send one of ``WORKER_COMMANDS`` to one worker (exact hostname) and wait for its reply."""
    if command not in WORKER_COMMANDS:
        raise ValueError(f"unknown worker command {command!r}")
    store = control_store(app, command)
    records = live_workers(store)
    record = records.get(hostname)
    if record is None:
        raise LookupError(f"no live worker {hostname!r}")
    if record.get("kind", "worker") != "worker":
        raise ValueError(f"{hostname!r} is a serverless container: commands do not apply")
    args = {"n": n or 1} if command.startswith("pool_") else {}
    return send_command(store, command, {hostname: record}, args)[0]


# --- queues -----------------------------------------------------------------------------------
def queues(dash: Dash) -> list[dict[str, Any]]:
    dash.observer.sample_heartbeats()
    return [asdict(r) for r in queue_rows(dash.app, dash.queues())]


# --- tasks ------------------------------------------------------------------------------------
def recent_tasks(dash: Dash) -> tuple[list[dict[str, Any]], str | None]:
    """(rows, note): from the event stream, else the tasks the workers run now."""
    if dash.observer.has_events:
        return dash.observer.recent(), dash.observer.error
    records, error = workers(dash.app)
    rows: list[dict[str, Any]] = []
    for host, record in records.items():
        for key, state in (("active", "STARTED"), ("reserved", "RECEIVED")):
            for item in record.get(key) or []:
                if isinstance(item, dict):
                    rows.append(
                        {
                            "uuid": str(item.get("id", "?")),
                            "name": str(item.get("name", "?")),
                            "state": state,
                            "hostname": host,
                            "attempt": item.get("attempt"),
                            "received": item.get("started"),
                            "runtime": None,
                            "info": "",
                        }
                    )
    return rows, error or NO_EVENTS_NOTE


def task_info(dash: Dash, task_id: str) -> dict[str, Any] | None:
    """A task in Flower's ``/api/task/info`` shape, from its events, its stored result and the
    revoked ids; None when none of them knows it."""
    app = dash.app
    row = dash.observer.task(task_id)
    record = None
    problems: list[str] = []
    if app.backend is not None:
        try:
            record = app.backend.get(task_id)
        except CloudqError as exc:
            problems.append(f"result store: {exc}")
    revoked = False
    try:
        store = find_revoke_store(app)
        revoked = store is not None and task_id in store.revoke_list()
    except CloudqError as exc:
        problems.append(f"revoked ids: {exc}")
    if row is None and record is None and not revoked:
        return None
    state = state_name(record.state) if record is not None else (row or {}).get("state", "PENDING")
    if revoked and state not in ("SUCCESS", "FAILURE", "REVOKED"):
        state = "REVOKED"
    error = record.error if record is not None else None
    events = row or {}
    return {
        "uuid": task_id,
        "name": (record.task if record is not None else None) or events.get("name"),
        "state": state,
        "worker": events.get("hostname") or None,
        "attempt": record.attempt if record is not None else events.get("attempt"),
        "received": events.get("received"),
        "timestamp": events.get("updated"),
        "runtime": events.get("runtime"),
        "date_done": record.date_done.isoformat()
        if record is not None and record.date_done
        else None,
        "result": record.result if record is not None and error is None else None,
        "exception": _exception(error, events, state),
        "traceback": error.traceback if error else None,
        "revoked": revoked,
        "args": _stored_args(record) or dash.seen_args(task_id),
        "queue": record.queue if record is not None else None,
        **family(app, record),
        "problems": problems,
        "now": time.time(),
    }


def _stored_args(record: Any) -> str | None:
    """What ``result_extended`` kept in the record (the app stored them: it chose to keep
    them), as the Dead letters page shows arguments; None when it kept none."""
    if record is None:
        return None
    if record.args_omitted:
        return str(record.args_omitted)
    if record.args is None and record.kwargs is None:
        return None
    return clipped(record.args, record.kwargs)


def _exception(error: Any, events: dict[str, Any], state: str) -> str | None:
    """The stored error, else what the last failure or retry event said."""
    if error is not None:
        return f"{error.type}: {error.message}"
    if state in ("FAILURE", "RETRY"):
        return str(events.get("info") or "") or None
    return None


def family(app: App, record: TaskResult | None) -> dict[str, Any]:
    """Parent, root, children, group, chord place and chain position, from the task's record
    and (for names, states and the chain's earlier steps) up to ``RELATED_READ`` others."""
    if record is None:
        return {
            "parent": None,
            "root_id": None,
            "children": [],
            "group_id": None,
            "chord_id": None,
            "chord_index": None,
            "chain": None,
        }
    budget = [RELATED_READ]

    def read(task_id: str) -> TaskResult | None:
        if budget[0] <= 0 or app.backend is None:
            return None
        budget[0] -= 1
        try:
            return app.backend.get(task_id)
        except CloudqError:
            return None

    def brief(task_id: str) -> dict[str, Any]:
        other = read(task_id)
        return {
            "id": task_id,
            "name": other.task if other is not None else None,
            "state": state_name(other.state) if other is not None else None,
        }

    parent = brief(record.parent_id) if record.parent_id else None
    return {
        "parent": parent,
        "root_id": record.root_id if record.root_id != record.task_id else None,
        "children": [brief(c) for c in record.children],
        "group_id": record.group_id,
        "chord_id": record.chord_id,
        "chord_index": record.chord_index,
        "chain": _chain(record, read, [brief(c) for c in record.chain_next]),
    }


def _chain(
    record: TaskResult, read: Callable[[str], TaskResult | None], ahead: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """``{"step": n, "of": m, "next": [...]}``: its place counted back through the parents
    whose records list it as their next step (what cannot be read is not counted)."""
    before, current = 0, record
    while current.parent_id:
        parent = read(current.parent_id)
        if parent is None or parent.chain_next[:1] != [current.task_id]:
            break
        before, current = before + 1, parent
    if before == 0 and not ahead:
        return None
    return {"step": before + 1, "of": before + 1 + len(ahead), "next": ahead}
