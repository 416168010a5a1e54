"""Helpers for testing apps: a worker in a thread, a fake clock, waiting on conditions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cloudq.clock import FakeClock
from cloudq.execute import execute
from cloudq.outcome import Outcome
from cloudq.routes import app_queues
from cloudq.settle import settle
from cloudq.worker import PoolKind, Worker

if TYPE_CHECKING:
    from cloudq.app import App

__all__ = ["FakeClock", "process_one", "start_worker", "wait_for"]

READY_TIMEOUT_SECONDS = 30.0
"""How long ``start_worker`` waits for its queues to exist and its pool to run."""


@contextmanager
def start_worker(
    app: App,
    queues: Sequence[str] | None = None,
    concurrency: int = 2,
    pool: PoolKind = "threads",
    poll_seconds: float = 0.2,
    prefetch: int | None = None,
    max_tasks_per_child: int | None = None,
    app_ref: str | None = None,
    shutdown_timeout: float = 60.0,
) -> Iterator[Worker]:
    """Run a real worker in a thread for the block, from when it receives; stop it gracefully
    on exit (waiting up to ``shutdown_timeout`` for running tasks).

    ``queues`` defaults to every queue the app names (``routes.app_queues``), as ``cloudq
    worker`` without ``-Q``.
    """
    if queues is None:
        queues = app_queues(app)
    worker = Worker(
        app,
        queues,
        concurrency=concurrency,
        pool=pool,
        poll_seconds=poll_seconds,
        prefetch=prefetch,
        max_tasks_per_child=max_tasks_per_child,
        app_ref=app_ref,
    )
    thread = threading.Thread(target=worker.run, name="cloudq-test-worker", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not worker.ready.wait(0.05):
            if not thread.is_alive():
                raise RuntimeError("the test worker stopped before it was ready (see its log)")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the test worker was not ready within {READY_TIMEOUT_SECONDS:.0f} s: "
                    "is the broker reachable? (see its log)"
                )
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=shutdown_timeout)
        if thread.is_alive():
            raise RuntimeError(f"test worker did not stop within {shutdown_timeout} s")


def wait_for(
    condition: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> None:
    """Poll ``condition`` until true; ``TimeoutError`` naming ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not met within {timeout}s")
        time.sleep(interval)


def process_one(app: App, queue: str | None = None) -> Outcome | None:
    """Receive one due message from ``queue``, execute and settle it here; None if none is due.

    With a ``FakeClock`` this steps through retries and delays exactly, without any waiting.
    """
    broker = app.broker
    deliveries = broker.receive(
        queue or app.conf.task_default_queue, 1, 0, app.conf.queue_lease_seconds
    )
    if not deliveries:
        return None
    outcome = execute(deliveries[0], app)
    settle(app, deliveries[0], outcome)
    return outcome
