"""The priority scenario every broker passes: one urgent task sent after a backlog runs first."""

from __future__ import annotations

import uuid

from cloudq import App
from cloudq.testing import start_worker, wait_for

BACKLOG = 6


def urgent_runs_before_the_backlog(app: App, poll_seconds: float = 1.0) -> None:
    """``BACKLOG`` tasks without a priority, then one with ``priority=9``; a one-slot worker on
    the queue runs the urgent one first (its sub-queue is scanned before the queue)."""
    assert app.conf.task_priority_queues
    queue = f"prio-{uuid.uuid4().hex[:6]}"
    order: list[str] = []

    @app.task(name=f"prio.job.{queue}", queue=queue)
    def job(label: str) -> None:
        order.append(label)

    for i in range(BACKLOG):
        job.delay(f"backlog-{i}")
    job.apply_async(("urgent",), priority=9)
    with start_worker(app, [queue], concurrency=1, prefetch=0, poll_seconds=poll_seconds):
        wait_for(lambda: len(order) == BACKLOG + 1, timeout=60, message="every task ran")
    assert order[0] == "urgent", order
