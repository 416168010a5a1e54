"""``AsyncResult.children``: the tasks a task sent while it ran, recorded with its result.

As in Celery, a task that calls ``other.delay()`` lists the new task among its children, so the
caller can follow the work it started. The producer notes each envelope sent from inside a
running task (``note_sent``), keyed by that task's id; the record written when the attempt ends
takes them (``record_children``). Notes are kept only where a record will be written (a result
backend, results not ignored), and at most ``MAX_PENDING`` task ids are held, so an attempt that
ends without a record (revoked, killed) cannot grow this map without bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cloudq.request import current_request
from cloudq.states import SUCCESS

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.envelope import Envelope

MAX_PENDING = 10_000
"""Running tasks with children noted and no record written yet (oldest dropped first)."""
MAX_CHILDREN = 1_000
"""Children listed per record: a task that fans out more keeps its record small."""

_lock = threading.Lock()
_pending: OrderedDict[str, list[str]] = OrderedDict()


def note_sent(app: App, envelopes: Sequence[Envelope]) -> None:
    """Called by the producer after a send: note what the running task (if any) just sent."""
    request = current_request.get()
    if request is None or request.called_directly or not app.conf.result_backend:
        return
    parent = request.id
    task = app.tasks.get(request.task or "")
    if parent is None or (task is not None and task.options.ignore_result):
        return
    ids = [env.id for env in envelopes if env.parent_id == parent]
    if not ids:
        return
    with _lock:
        noted = _pending.setdefault(parent, [])
        noted.extend(ids[: max(0, MAX_CHILDREN - len(noted))])
        while len(_pending) > MAX_PENDING:
            _pending.popitem(last=False)


def take_children(task_id: str) -> list[str]:
    """The children noted for ``task_id`` (none: an empty list), forgotten here."""
    if not _pending:  # most tasks send nothing: no lock taken
        return []
    with _lock:
        return _pending.pop(task_id, [])


def record_children(env: Envelope, state: str) -> list[str]:
    """The children a record of ``env`` in ``state`` lists: what the attempt sent, and on
    SUCCESS the links whose ids are known before they are sent (a chain's next step), which
    the worker sends right after the record, as Celery lists a callback among the children."""
    ids = take_children(env.id)
    if state == SUCCESS and env.links:
        for link in env.links:
            options = link.get("options") if isinstance(link, dict) else None
            task_id = options.get("task_id") if isinstance(options, dict) else None
            if isinstance(task_id, str):
                ids.append(task_id)
    return ids
