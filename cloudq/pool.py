"""How a worker slot runs one delivery: in its own thread, or in a child process it owns.

The processes pool gives hard time limits that always hold (the child is killed and replaced)
and ``max_tasks_per_child`` recycling for code that leaks memory. Children are started with
``spawn`` (a fork of a threaded parent can deadlock) and import the app by its path (``-A``).
Only our own Delivery and Outcome objects cross the pipe between parent and child.

Trust: the parent opens and verifies every delivery itself (``open_body``, as ``execute`` does)
before the child sees it, because the parent builds the follow-ups of a child that dies or
overruns its hard limit, and ``send_envelopes`` signs them: they must start from a verified
envelope. What cannot be opened is dead-lettered here without involving the child.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
from typing import TYPE_CHECKING, Any, Protocol

from cloudq import revoke
from cloudq.adapters.base import Delivery
from cloudq.app_loading import find_app_ref, load_app
from cloudq.errors import TaskRevokedError, TimeLimitExceeded, WorkerLostError
from cloudq.execute import execute, open_body, outcome_for_error, retry_or_fail
from cloudq.idempotency import release_for
from cloudq.logsafe import get_logger
from cloudq.middleware import add_inherited
from cloudq.outcome import DeadLetter, Outcome
from cloudq.time_limits import interrupt

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from cloudq.app import App

__all__ = ["Executor", "ProcessExecutor", "ThreadExecutor", "load_app", "make_executor"]
"""``load_app`` lives in ``cloudq.app_loading`` now; re-exported from here, its old home."""

logger = get_logger("cloudq.pool")

CHILD_START_TIMEOUT_SECONDS = 60.0
KILL_GRACE_SECONDS = 1.0
"""The child raises at the hard limit itself; the parent kills it this much later if it did not."""


class Executor(Protocol):
    def run(self, delivery: Delivery) -> Outcome | None:
        """The outcome, or None when it is unknown (then the message comes back by its lease)."""
        ...

    def terminate(self, task_id: str, thread_id: int) -> bool:
        """Stop ``task_id``, running in this slot's thread ``thread_id`` (revoke --terminate)."""
        ...

    def close(self) -> None: ...


class ThreadExecutor:
    """Runs ``execute`` in the slot's own thread."""

    def __init__(self, app: App) -> None:
        self.app = app

    def run(self, delivery: Delivery) -> Outcome | None:
        return execute(delivery, self.app)

    def terminate(self, task_id: str, thread_id: int) -> bool:
        """``TaskRevokedError`` raised in the task's thread, at its next Python instruction."""
        return interrupt(thread_id, TaskRevokedError)

    def close(self) -> None:
        """Nothing to release."""


def _child_main(app_ref: str, conn: Connection, log_level: int) -> None:
    """A pool child: import the app, run deliveries from the pipe, send outcomes back.

    SIGINT is ignored: a terminal's Ctrl-C reaches the whole process group, and the parent
    governs shutdown (it lets running tasks finish); in the child it would fail the task.
    An error out of ``execute`` (a store outage) is sent as None: the message comes back.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="[%(asctime)s: %(levelname)s/child] %(message)s")
    app = load_app(app_ref)
    add_inherited(app)  # what the worker's options add (--metrics-port), before the hooks run
    app.hooks.emit("process_start")
    conn.send("ready")
    try:
        _serve(app, conn)
    finally:
        app.hooks.emit("process_stop", pid=os.getpid(), exitcode=0)


def _serve(app: App, conn: Connection) -> None:
    while True:
        try:
            delivery = conn.recv()
        except EOFError:
            return
        if delivery is None:
            return
        outcome: Outcome | None = None
        try:
            outcome = execute(delivery, app)
        except Exception:
            logger.exception("message %s: outcome unknown; it will come back", delivery.message_id)
        conn.send(outcome)


class ProcessExecutor:
    """Owns one child process; kills and replaces it on hard time limit or after N tasks."""

    def __init__(self, app: App, app_ref: str, max_tasks: int | None) -> None:
        self.app = app
        self.app_ref = app_ref
        self.max_tasks = max_tasks
        import multiprocessing  # only the processes pool needs it (a thread worker's RSS)

        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: Connection | None = None
        self._done = 0
        self._terminating: str | None = None
        """The task id whose child ``terminate`` killed: its death is a revoke, not a crash."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> Connection:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_child_main,
            args=(self.app_ref, child, logging.getLogger("cloudq").getEffectiveLevel()),
            name="cloudq-child",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._conn = parent
        self._done = 0
        try:
            started = parent.poll(CHILD_START_TIMEOUT_SECONDS) and parent.recv() == "ready"
        except (EOFError, OSError):
            started = False
        if not started:
            self._kill()
            raise WorkerLostError(f"pool child did not start within {CHILD_START_TIMEOUT_SECONDS}s")
        logger.debug("started pool child pid %s", self._proc.pid)
        return parent

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def run(self, delivery: Delivery) -> Outcome | None:
        opened = open_body(delivery, self.app)
        if isinstance(opened, DeadLetter):
            return opened  # forged, malformed, misrouted: the child never sees it
        env, body = opened
        keep = bool(self.app.conf.result_backend)
        revoked = revoke.check(self.app, env, self.app.clock, keep)  # the child's ids are stale
        if revoked is not None:
            return revoked
        task = self.app.tasks.get(env.task)
        limit = task.time_limit if task else self.app.conf.task_time_limit
        conn = self._conn if self._conn is not None and self._proc.is_alive() else self._start()
        # The child gets the body already fetched (a claim-checked one is not downloaded
        # twice); the delivery here keeps its own, whose pointer settling deletes. The
        # adapter's handle stays here too (a Service Bus lock holds its receiver and locks,
        # which do not pickle): the child needs the body and counts only.
        conn.send(dataclasses.replace(delivery, handle=None, body=body))
        # The child enforces the limit itself (SIGALRM); the parent kills it if that fails.
        ready = conn.poll(limit + KILL_GRACE_SECONDS)
        if not ready:
            logger.error(
                "task in pid %s passed its hard time limit (%ss): killing the child",
                self.pid,
                limit,
            )
            self._kill()
            exc = TimeLimitExceeded(f"hard time limit ({limit}s) exceeded; child killed")
            release_for(self.app, task, env.id)  # the body is gone: its retry need not wait
            return outcome_for_error(env, task, exc, self.app.clock, keep)
        try:
            outcome: Outcome | None = conn.recv()
        except (EOFError, OSError):
            pid = self.pid
            if self._proc is not None:
                self._proc.join(5)  # reaped, so the exit code is known
            code = self._proc.exitcode if self._proc is not None else None
            self._kill()
            release_for(self.app, task, env.id)
            if self._terminating == env.id:
                self._terminating = None
                return revoke.revoked_outcome(self.app, env, self.app.clock, keep, "terminated")
            lost = WorkerLostError(f"pool child pid {pid} died (exit code {code}) running it")
            logger.error("task %s: %s", delivery.message_id, lost)
            # A crash is a failed attempt: retried by the task's policy, then dead-lettered
            # with this error, never a loop of crashes.
            return retry_or_fail(env, lost, self.app.clock, bool(self.app.conf.result_backend))
        self._done += 1
        if self.max_tasks and self._done >= self.max_tasks:
            logger.info("child pid %s ran %d tasks: replacing it", self.pid, self._done)
            self.close()
        return outcome

    def terminate(self, task_id: str, thread_id: int) -> bool:
        """Kill the child running ``task_id``; ``run`` replaces it and reports the revoke."""
        proc = self._proc
        if proc is None or not proc.is_alive():
            return False
        self._terminating = task_id
        logger.warning(
            "task %s revoked with terminate: killing pool child pid %s", task_id, proc.pid
        )
        proc.kill()
        return True

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        if self._proc is not None:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
        self._kill()


def make_executor(
    app: App, kind: str, app_ref: str | None = None, max_tasks_per_child: int | None = None
) -> Executor:
    """One slot's executor: ``threads`` runs in the slot's thread; ``processes`` in a child
    that imports the app by ``app_ref`` (found if None) and is replaced every
    ``max_tasks_per_child`` tasks."""
    if kind == "threads":
        return ThreadExecutor(app)
    return ProcessExecutor(app, app_ref or find_app_ref(app), max_tasks_per_child)
