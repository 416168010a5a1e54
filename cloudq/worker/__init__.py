"""The long-lived worker: receive in batches, run on a pool, keep leases alive, stop cleanly.

Queue priority: queues listed first drain first. Each receive round scans the queues in order and
takes from a queue only what the earlier ones left free. So that a queue behind a flooded one is
not starved forever, every ``worker_fairness_rounds``-th round (default 10) starts the scan at
the next queue in turn: under full load the last queue still gets at least one round in N.

Stopping (SIGTERM, SIGINT, ``stop()``): receiving stops, messages held but not started are
released at once (visible to other workers immediately), running tasks finish and are settled,
acknowledgements are flushed, and ``run()`` returns. A second signal exits at once; the running
tasks' messages then come back after their lease (at-least-once).

Control plane (``cloudq.control``): the housekeeping thread also drives the heartbeat record in
the shared store, the commands read on it (``shutdown``, ``pool_grow``/``pool_shrink``, events on
or off) and the event flushes; the pool grows and shrinks while running.
"""

from __future__ import annotations

import os
import queue as queue_mod
import random
import signal
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from cloudq import priority
from cloudq.adapters.base import Delivery
from cloudq.control.events import not_yet_due, outcome_events
from cloudq.control.heartbeat import WorkerControl, task_entry
from cloudq.control.store import HEARTBEAT_SECONDS
from cloudq.errors import BrokerError, ConfigurationError
from cloudq.logsafe import get_logger
from cloudq.outcome import Ack, DeadLetter, Outcome, RetryAt
from cloudq.pool import make_executor
from cloudq.redelivery import first_fresh_start, screen
from cloudq.settle import settle
from cloudq.stores.requirements import require, task_needs
from cloudq.worker.fifo_groups import FifoGroups
from cloudq.worker.leases import (
    ACK_FLUSH_SECONDS,
    LEASE_RENEW_SHARE,
    Acker,
    Held,
    extend_leases,
    lease_for,
    leases_due,
)

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.worker")

_Acker = Acker
"""The old private names, still imported by benches and tests."""
_Held = Held
__all__ = [
    "ACK_FLUSH_SECONDS",
    "HARD_LIMIT_GRACE_SECONDS",
    "IDLE_TICK_SECONDS",
    "LEASE_RENEW_SHARE",
    "PoolKind",
    "Worker",
]

PoolKind = Literal["threads", "processes"]
IDLE_TICK_SECONDS = 1.0
"""How often the housekeeping thread looks at the heartbeat and its counts when no ack is
pending (lease rounds wake it on time): an idle worker wakes once a second, not twenty times."""
HARD_LIMIT_GRACE_SECONDS = 2.0
ACTIVITY_LOG_SECONDS = 60.0
"""How often a busy worker logs one INFO line with its counts. Each task's success is a DEBUG
line: one INFO line per task is a log bill at scale and, with several pool threads contending
for the log handler, cost more CPU than the rest of running a no-op task (bench/FIXES.md)."""


_FINISHED = (Ack, RetryAt, DeadLetter)
"""Outcomes that count as processed (a deferral is not: the task has not run)."""


class _Retire:
    """Queued by ``shrink``: the pool thread that takes it exits."""


_RETIRE = _Retire()


class _Activity:
    """The worker's periodic INFO line: what it did since the last one (nothing when idle)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.since = time.monotonic()
        self.processed = worker.processed
        self.failed = worker.failed

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.since < ACTIVITY_LOG_SECONDS:
            return
        w = self.worker
        done, failed = w.processed - self.processed, w.failed - self.failed
        if done:
            running, held = w.held_counts()
            logger.info(
                "%d task(s) done in the last %.0fs (%d failed); %d running, %d prefetched",
                done,
                now - self.since,
                failed,
                running,
                held - running,
            )
        self.since, self.processed, self.failed = now, w.processed, w.failed


def _prefetch(app: App, concurrency: int, given: int | None) -> int:
    """Messages held beside the running ones: ``given``, else the settings, else room for one
    full receive batch (the next batch arrives while the pool works through this one, and every
    receive call is a full one)."""
    conf = app.conf
    if given is None:
        given = conf.worker_prefetch
    if given is None and conf.worker_prefetch_multiplier is not None:
        # Celery's multiplier counts the running tasks too; cloudq's prefetch does not.
        given = (conf.worker_prefetch_multiplier - 1) * concurrency
    if given is None:
        given = max(concurrency, app.broker.limits.max_batch)
    return given


class Worker:
    """``cloudq -A tasks worker -Q high,default -c 8``.

    :param app: the app whose tasks run.
    :param queues: the queues to receive from, first drains first (named explicitly: never
        guessed).
    :param concurrency: tasks run at once (default ``worker_concurrency``).
    :param pool: ``threads`` (in this process) or ``processes`` (a child per slot, killed on
        its hard time limit).
    :param prefetch: messages held beside the running ones (default: room for one receive
        batch, or ``worker_prefetch``/``worker_prefetch_multiplier``).
    :param max_tasks_per_child: replace a ``processes`` child after this many tasks.
    :param poll_seconds: how long an idle receive waits (default ``worker_poll_seconds``).
    :param app_ref: ``module:attribute`` the pool children import the app by (found if None).
    :param hostname: the node name in ``status`` and ``control`` (default ``pid@host``).
    :param events: send task events from the start (``-E``).
    :param heartbeat_seconds: interval of the heartbeat record (default
        ``cloudq.control.store.HEARTBEAT_SECONDS``).
    """

    def __init__(
        self,
        app: App,
        queues: Sequence[str],
        concurrency: int | None = None,
        pool: PoolKind = "threads",
        prefetch: int | None = None,
        max_tasks_per_child: int | None = None,
        poll_seconds: float | None = None,
        app_ref: str | None = None,
        hostname: str | None = None,
        events: bool = False,
        heartbeat_seconds: float | None = None,
    ) -> None:
        queues = [q.strip() for q in queues if q and q.strip()]
        if not queues:
            raise ConfigurationError(
                "a worker needs its queues named explicitly (-Q high,default): a worker that "
                "guesses its queues silently starves the ones it missed"
            )
        if pool not in ("threads", "processes"):
            raise ConfigurationError(f"unknown pool {pool!r}: use 'threads' or 'processes'")
        require(app, "cloudq worker", task_needs(app))  # before any receive
        conf = app.conf
        self.app = app
        self.queues = priority.expand(app, queues)  # sub-queues first: cloudq.priority
        self.concurrency = concurrency or conf.worker_concurrency
        self.pool_kind: PoolKind = pool
        self.prefetch = _prefetch(app, self.concurrency, prefetch)
        self._receive_threshold = 1
        """Receive only once this many slots are free (or none is held): full batches, not
        one-message polls (a receive call costs as much CPU and money for 1 message as for 10)."""
        self._update_threshold()
        self.max_tasks_per_child = max_tasks_per_child or conf.worker_max_tasks_per_child
        self.poll_seconds = conf.worker_poll_seconds if poll_seconds is None else poll_seconds
        self.lease = lease_for(app)
        self._fresh_from = first_fresh_start(app)
        """Receive count from which a delivery is re-sent fresh (``cloudq.redelivery``)."""
        self._long_poll_first = (
            len(self.queues) == 1 and app.broker.limits.long_poll_returns_at_once
        )
        self.app_ref = app_ref
        self.hostname = hostname or f"{os.getpid()}@{os.uname().nodename}"
        self.processed = 0
        self.failed = 0
        # SimpleQueue: put/get in C, no Condition per put (a measurable share of a busy worker).
        self._jobs: queue_mod.SimpleQueue[Delivery | _Retire | None] = queue_mod.SimpleQueue()
        self._held: dict[int, Held] = {}
        # Reentrant: the SIGTERM handler (stop) may run while this same thread holds it.
        self._held_lock = threading.RLock()
        self._room = threading.Condition(self._held_lock)
        self._stopping = threading.Event()
        self.ready = threading.Event()
        """Set once the queues exist and the pool runs: the worker is receiving."""
        self._stopped = threading.Event()
        self._acker = Acker(app, self.lease)
        self._threads: list[threading.Thread] = []
        self._pool_lock = threading.Lock()
        self._slots = 0
        self._groups = FifoGroups(self._held_lock, self._jobs.put, self._forget, self._release)
        self._round = 0
        # Leases are extended up to the longest time limit any task may run for, no further.
        self._longest_limit = max(
            [app.conf.task_time_limit, *(t.time_limit for t in app.tasks.values())]
        )
        if self.max_tasks_per_child and pool == "threads":
            logger.warning("--max-tasks-per-child applies to the processes pool only; ignored")
        if heartbeat_seconds is not None and heartbeat_seconds <= 0:
            raise ConfigurationError("the heartbeat interval must be more than 0 seconds")
        self.control = WorkerControl(self, heartbeat_seconds or HEARTBEAT_SECONDS, events)

    def _update_threshold(self) -> None:
        self._receive_threshold = max(1, min(self.app.broker.limits.max_batch, self.prefetch))

    # --- lifecycle -----------------------------------------------------------------------
    def run(self) -> None:
        """Work until stopped; returns after a graceful stop."""
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        hooks = self.app.hooks
        hooks.emit("worker_start", worker=self)
        if self.pool_kind == "threads":
            hooks.emit("process_start")  # the threads run tasks in this process
        if not self._ensure_queues():
            hooks.emit("worker_stop", worker=self)
            return
        self.control.start()
        with self._pool_lock:
            for _ in range(self.concurrency):
                self._start_slot()
        house = threading.Thread(target=self._housekeeping, name="cloudq-lease", daemon=True)
        house.start()
        logger.info(
            "worker %s ready: queues %s, %s pool x%d, prefetch %d, lease %.0fs",
            self.hostname,
            ",".join(self.queues),
            self.pool_kind,
            self.concurrency,
            self.prefetch,
            self.lease,
        )
        self.ready.set()
        hooks.emit("worker_ready", worker=self)
        try:
            self._receive_loop()
        finally:
            self._shutdown()
            house.join(timeout=5)
            self.control.close()
            hooks.emit("worker_stop", worker=self)

    def _start_slot(self) -> None:
        """One more pool thread with its executor (caller holds ``_pool_lock``)."""
        index = self._slots
        self._slots += 1
        executor = make_executor(self.app, self.pool_kind, self.app_ref, self.max_tasks_per_child)
        t = threading.Thread(
            target=self._work, args=(executor,), name=f"cloudq-pool-{index}", daemon=True
        )
        t.start()
        self._threads.append(t)

    # --- pool size (control commands) ----------------------------------------------------
    def grow(self, n: int) -> int:
        """Add ``n`` pool slots now; returns the new size (unchanged once stopping)."""
        with self._pool_lock:
            if self._stopping.is_set():
                return self.concurrency
            for _ in range(n):
                self._start_slot()
            self.concurrency += n
            self._update_threshold()
        with self._room:
            self._room.notify_all()
        return self.concurrency

    def shrink(self, n: int) -> int:
        """Retire up to ``n`` slots (never the last) once they finish their current task;
        returns how many will go."""
        with self._pool_lock:
            n = max(0, min(n, self.concurrency - 1))
            self.concurrency -= n
            self._update_threshold()
            for _ in range(n):
                self._jobs.put(_RETIRE)
        return n

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def terminate(self, task_ids: set[str]) -> list[str]:
        """Stop the running tasks among ``task_ids`` (revoke --terminate); their ids.

        Under the held lock: a slot pops its delivery under it only after the task returned,
        so a task found here is still the one its thread or child runs (or has just ended)."""
        stopped = []
        with self._held_lock:
            for held in self._held.values():
                if held.started is None or held.executor is None or held.thread is None:
                    continue
                task_id = held.task().id
                if task_id in task_ids and held.executor.terminate(task_id, held.thread):
                    stopped.append(task_id)
        return stopped

    def active_tasks(self) -> list[dict[str, Any]]:
        """The running tasks (id, name, attempt, queue, started as epoch seconds)."""
        offset = time.time() - time.monotonic()
        with self._held_lock:
            held = [h for h in self._held.values() if h.started is not None]
        return [task_entry(h.task(), offset + (h.started or 0.0)) for h in held]

    def held_counts(self) -> tuple[int, int]:
        """(running, held): tasks running now, and every message held (running or not)."""
        with self._held_lock:
            running = sum(1 for h in self._held.values() if h.started is not None)
            return running, len(self._held)

    def reserved_tasks(self) -> list[dict[str, Any]]:
        """Messages held but not started (prefetched, or waiting behind their FIFO group)."""
        with self._held_lock:
            held = [h for h in self._held.values() if h.started is None]
        return [task_entry(h.task()) for h in held]

    def _ensure_queues(self) -> bool:
        """Create missing queues, waiting out a broker outage; False if stopped meanwhile."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                for name in self.queues:
                    self.app.ensure_queue(name)
                return True
            except BrokerError as exc:
                logger.error("broker unavailable at start (%s); retrying in %.1fs", exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        return False

    def reload(self) -> None:
        """Celery's ``worker.reload()``: nothing to do, tasks are looked up per message, so one
        registered after the worker started runs as it is."""

    def stop(self) -> None:
        """Ask for a graceful stop (what SIGTERM does)."""
        self._stopping.set()
        with self._room:
            self._room.notify_all()

    def _install_signals(self) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            if self._stopping.is_set():
                logger.warning("second signal: exiting now; running tasks return after their lease")
                os._exit(1)
            logger.info(
                "signal %s: stopping after running tasks finish", signal.Signals(signum).name
            )
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # --- receiving -----------------------------------------------------------------------
    def _free(self) -> int:
        return self.concurrency + self.prefetch - len(self._held)

    def _scan_order(self) -> list[str]:
        self._round += 1
        n = len(self.queues)
        rounds = self.app.conf.worker_fairness_rounds
        if n == 1 or self._round % rounds:
            return self.queues
        shift = (self._round // rounds) % n
        return self.queues[shift:] + self.queues[:shift]

    def _receive_loop(self) -> None:
        broker = self.app.broker
        backoff = 0.5
        while not self._stopping.is_set():
            with self._room:
                while (
                    self._free() < self._receive_threshold
                    and self._held
                    and not self._stopping.is_set()
                ):
                    self._room.wait(1.0)
            if self._stopping.is_set():
                break
            got = 0
            try:
                order = self._scan_order()
                # One queue on a broker whose long poll returns at once: a short poll first
                # would only add a call per idle spell. Several queues: a short poll of each in
                # priority order, or a long poll on the first would keep the others waiting.
                wait = self.poll_seconds if self._long_poll_first else 0
                for name in order:
                    free = min(self._free(), broker.limits.max_batch)
                    if free <= 0:
                        break
                    got += self._take(broker.receive(name, free, wait, self.lease))
                if self._long_poll_first:
                    backoff = 0.5
                    continue
                if not got:
                    # Idle: long-poll the queues in turn, each for a share of the poll time.
                    share = self.poll_seconds / len(order)
                    for name in order:
                        if self._stopping.is_set():
                            break
                        free = min(self._free(), broker.limits.max_batch)
                        got += self._take(broker.receive(name, free, share, self.lease))
                        if got:
                            break
                backoff = 0.5
            except Exception:
                pause = backoff * random.uniform(0.5, 1.0)  # jitter: workers do not stampede
                logger.exception("receive failed; retrying in %.1fs", pause)
                self._stopping.wait(pause)
                backoff = min(backoff * 2, 30.0)

    def _take(self, deliveries: list[Delivery]) -> int:
        if not deliveries:
            return 0
        if self._stopping.is_set():
            self.app.broker.release(deliveries, 0)
            return 0
        first = self._fresh_from
        if first is not None and any(d.receive_count >= first for d in deliveries):
            # Near the broker's max receive count without a failure: kills elsewhere took its
            # receives. Started fresh, not held: a kill now would hand it to the dead letters.
            deliveries = screen(self.app, deliveries, first)
            if not deliveries:
                return 0
        held = [Held(d) for d in deliveries]
        with self._held_lock:
            for h in held:
                self._held[id(h.delivery)] = h
        events = self.control.events
        if events.enabled:
            for h in held:
                info = h.task()
                events.emit(
                    "task-received",
                    uuid=info.id,
                    name=info.name,
                    attempt=info.attempt,
                    queue=info.queue,
                    eta=info.eta,
                )
        for d in deliveries:
            self._groups.enqueue(d)
        return len(deliveries)

    def _forget(self, delivery: Delivery) -> None:
        """No longer held (caller holds ``_held_lock``)."""
        self._held.pop(id(delivery), None)

    def _release(self, deliveries: Sequence[Delivery]) -> None:
        self.app.broker.release(deliveries, 0)

    # --- running -------------------------------------------------------------------------
    def _work(self, executor: Any) -> None:
        try:
            while True:
                delivery = self._jobs.get()
                if delivery is None:
                    return
                if isinstance(delivery, _Retire):
                    with self._pool_lock:
                        self._threads.remove(threading.current_thread())
                    logger.info("pool slot retired: %d left", self.concurrency)
                    return
                self._run_one(executor, delivery)
        finally:
            executor.close()

    def _run_one(self, executor: Any, delivery: Delivery) -> None:
        now = time.monotonic()
        # No lock: a dict read and attribute writes are atomic, and readers that find
        # ``started`` set find the deadline set too (written first).
        held = self._held.get(id(delivery))
        if held is not None:
            held.deadline = now + self._longest_limit + HARD_LIMIT_GRACE_SECONDS
            held.executor, held.thread = executor, threading.get_ident()
            held.started = now
        events = self.control.events
        info = held.task() if held is not None and events.enabled else None
        if info is not None and not_yet_due(info, self.app.clock.now()) is None:
            pid = getattr(executor, "pid", None) or os.getpid()
            events.emit("task-started", uuid=info.id, name=info.name, attempt=info.attempt, pid=pid)
        outcome: Outcome | None = None
        try:
            outcome = executor.run(delivery)
            if outcome is not None:
                settle(self.app, delivery, outcome, ack=self._acker)
                if info is not None and events.enabled:
                    for event in outcome_events(info, outcome, time.monotonic() - now):
                        events.emit(event.pop("type"), **event)
        except BaseException:  # whatever it was, this slot lives on
            # Not only Exception: a SystemExit here ended the pool thread for good, and the
            # worker went on receiving for a slot that would never run anything again.
            # Shutdown signals are the main thread's (``stop()``), never raised in a slot.
            outcome = None
            logger.exception(
                "could not settle message %s; it will be redelivered", delivery.message_id
            )
        finally:
            self._groups.done(delivery, outcome)
            # The lock under ``_room``, taken directly: the Condition's ``with`` is Python code.
            with self._held_lock:
                # Counted under the lock: pool threads finish at once, and += is not atomic.
                if outcome is not None:
                    self._count(outcome)
                self._held.pop(id(delivery), None)
                # Wake the receiver only when it may receive: not once per task.
                if not self._held or self._free() >= self._receive_threshold:
                    self._room.notify_all()

    def _count(self, outcome: Outcome) -> None:
        if isinstance(outcome, _FINISHED):
            self.processed += 1
        if isinstance(outcome, DeadLetter):
            self.failed += 1

    # --- leases and acks -----------------------------------------------------------------
    def _housekeeping(self) -> None:
        """Flush acks within ACK_FLUSH_SECONDS of the first pending one; extend leases of held
        messages before they run out; drive the heartbeat. Asleep in between."""
        next_lease = time.monotonic()
        activity = _Activity(self)
        while not self._stopped.is_set():
            # Events (switched on and off by command) are flushed on the control tick: a worker
            # sending them ticks at the ack pace. A beat comes at most a fifth of its interval late.
            idle = min(IDLE_TICK_SECONDS, self.control.interval / 5)
            if self.control.events.enabled:
                idle = ACK_FLUSH_SECONDS
            # Awake on time for the next lease round: a late one could let a lease lapse.
            timeout = max(0.0, min(idle, next_lease - time.monotonic()))
            if self._acker.due.wait(timeout) and not self._stopped.is_set():
                self._stopped.wait(ACK_FLUSH_SECONDS)  # let the batch fill
            self._acker.flush()
            if time.monotonic() >= next_lease:
                next_lease = time.monotonic() + self.lease / 3
                self._extend_leases()
            self.control.tick()
            activity.tick()

    def _extend_leases(self) -> None:
        with self._held_lock:
            due = leases_due(self._held.values(), self.lease, time.monotonic())
        if due:
            extend_leases(self.app, due, self.lease)

    # --- stopping ------------------------------------------------------------------------
    def _shutdown(self) -> None:
        waiting = self._groups.drain()
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue_mod.Empty:
                break
            if isinstance(item, Delivery):
                waiting.append(item)
        if waiting:
            try:
                self.app.broker.release(waiting, 0)
            except Exception:
                logger.exception("could not release %d prefetched message(s)", len(waiting))
            with self._held_lock:
                for d in waiting:
                    self._held.pop(id(d), None)
        logger.info(
            "stopping: released %d prefetched message(s), waiting for %d running",
            len(waiting),
            len(self._held),
        )
        with self._pool_lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for t in threads:
            t.join()
        self._acker.flush()
        self._stopped.set()
        self._acker.due.set()  # wakes the housekeeping thread to see it
        logger.info(
            "worker %s stopped: %d processed, %d failed", self.hostname, self.processed, self.failed
        )
