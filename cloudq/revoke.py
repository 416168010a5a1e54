"""Revoke (Celery's ``revoke``): a revoked task never runs, and a running one can be stopped.

``revoke(app, ids)`` records the ids in the shared state store (the result backend) for
``result_expires``: a revoke outlives the task's result no longer, and covers any countdown up to
it. Nothing is broadcast through the broker (SQS has no fan-out a worker could read).

Checking costs no store call per task: each process keeps the ids in memory (``RevokedIds``, one
per app, at ``app.control.revoked``) and ``execute`` looks a delivery's id up there.

- A worker refreshes the ids from the store on every heartbeat (``--heartbeat-interval``, 5 s by
  default): that interval is how late a revoke may be seen. A delivery taken before its worker
  knew it was revoked runs; its next delivery (a delay hop, a retry, a rate deferral) is caught.
- A processes-pool worker checks in the parent, before the child sees the delivery.
- A serverless handler calls ``refresh(app)`` once at the start of each invocation.
- ``terminate=True`` also sends a ``revoke`` command to every live worker, read on its heartbeat:
  the threads pool raises ``TaskRevokedError`` in the task's thread (at its next Python
  instruction, as the time limits do), the processes pool kills the child and replaces it.

A revoked delivery is acknowledged, never dead-lettered: state REVOKED is stored (``get()``
raises ``TaskRevokedError``), its chain links are not sent, its error callbacks are, and a
revoked chord header fails the chord (the body's error callbacks run once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from cloudq.control.store import find_revoke_store, revoke_store
from cloudq.errors import ConfigurationError, TaskRevokedError
from cloudq.logsafe import get_logger
from cloudq.outcome import Ack
from cloudq.results.base import ErrorInfo, State, TaskResult

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.clock import Clock
    from cloudq.control.commands import Reply
    from cloudq.envelope import Envelope

logger = get_logger("cloudq.revoke")

REVOKE_COMMAND = "revoke"
"""The control command a worker reads on its heartbeat (args: ``task_ids``, ``terminate``)."""
REVOKED_ERROR = "cloudq.errors.TaskRevokedError"
"""The error type of a REVOKED record written here (an expired task's says ``TaskExpired``)."""


class RevokedIds:
    """This process's copy of the revoked ids: a frozenset swapped whole, so the check on the
    hot path is one set lookup without a lock."""

    def __init__(self) -> None:
        self._ids: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def sorted(self) -> list[str]:
        return sorted(self._ids)

    def add(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            self._ids = self._ids | frozenset(task_ids)

    def replace(self, task_ids: Iterable[str]) -> None:
        """The store's list, whole (ids that expired there are forgotten here too)."""
        with self._lock:
            self._ids = frozenset(task_ids)


def _ids(task_ids: str | Sequence[str]) -> list[str]:
    ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
    if not ids or not all(isinstance(t, str) and t for t in ids):
        raise ConfigurationError(f"revoke needs one or more task ids (strings), got {task_ids!r}")
    return list(dict.fromkeys(ids))


def revoke(
    app: App,
    task_ids: str | Sequence[str],
    terminate: bool = False,
    *,
    wait: bool = False,
    timeout: float | None = None,
) -> list[Reply]:
    """Record ``task_ids`` as revoked; with ``terminate``, also stop them where they run.

    Returns the workers' replies to the terminate command when ``wait`` is set (else none: the
    command is read on each worker's next heartbeat). Raises ``ConfigurationError`` naming
    ``result_backend`` when there is no shared store.
    """
    ids = _ids(task_ids)
    store = revoke_store(app, "revoke")
    store.revoke_add(ids, app.conf.result_expires)
    app.control.revoked.add(ids)  # this process knows at once (eager runs, tests, handlers)
    logger.info("revoked %d task id(s)%s", len(ids), " (terminate)" if terminate else "")
    if not terminate:
        return []
    from cloudq.control.commands import live_workers, select, send_command
    from cloudq.control.store import control_store

    control = control_store(app, "revoke --terminate")
    targets = select(live_workers(control), None, serverless=False)
    if not targets:
        return []
    args = {"task_ids": ids, "terminate": True}
    replies = send_command(control, REVOKE_COMMAND, targets, args, timeout if wait else 0.0)
    return replies if wait else []


def refresh(app: App) -> bool:
    """Reload this process's revoked ids from the store; never raises (a store outage keeps the
    ids known so far, and is logged). Serverless handlers call it once per invocation, before
    executing the batch; workers call it on every heartbeat. False when it could not."""
    try:
        store = find_revoke_store(app)
        if store is None:
            return False
        app.control.revoked.replace(store.revoke_list())
    except Exception as exc:  # noqa: BLE001 - a revoke list is never worth failing a batch
        logger.warning("could not refresh the revoked task ids from the store: %s", exc)
        return False
    return True


def revoked_outcome(app: App, env: Envelope, clock: Clock, keep: bool, how: str = "revoked") -> Ack:
    """Acknowledge ``env`` unrun (or stopped): its REVOKED record and its error callbacks (a
    chord header also fails its chord, as a failed header does)."""
    from cloudq.settle import _after_failure  # settle imports execute, which imports this

    logger.warning("task %s[%s] %s: acknowledged, not run", env.task, env.id, how)
    error = ErrorInfo(type=REVOKED_ERROR, message=f"task {env.id} was {how}")
    record = None
    if keep:
        record = TaskResult(
            task_id=env.id,
            state=State.REVOKED,
            task=env.task,
            error=error,
            attempt=env.attempt,
            date_done=clock.now(),
        )
    return Ack(result=record, follow_ups=tuple(_after_failure(app, env)))


def check(app: App, env: Envelope, clock: Clock, keep: bool) -> Ack | None:
    """``execute``'s check: the revoked outcome if ``env``'s id is known revoked here, else None.

    One lookup in this process's set: no store call."""
    if env.id not in app.control.revoked:
        return None
    return revoked_outcome(app, env, clock, keep)


def stopped(app: App, env: Envelope, exc: BaseException, clock: Clock, keep: bool) -> Ack | None:
    """The revoked outcome when ``exc`` is the ``TaskRevokedError`` that ``revoke --terminate``
    raised in the task's thread; None for any other error."""
    if not isinstance(exc, TaskRevokedError):
        return None
    return revoked_outcome(app, env, clock, keep, "terminated")
