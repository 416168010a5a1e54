"""Worker scenarios that read the same on every broker: each test module runs them with its own
``Stack`` and task prefix (``sqs``, ``ps``, ``sb``) and adds what only its broker can show."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

from cloudq import App
from cloudq.adapters.base import QueueStats
from cloudq.result import AsyncResult
from tests.integration.stack import Stack
from tests.processes import STARTUP_TIMEOUT, LoggedProcess, events, wait_for


def drained(app: App, queue: str) -> QueueStats | None:
    """The queue's stats if nothing is left in it (visible, in flight or delayed), else None."""
    stats = app.broker.stats(queue)
    if stats.visible or stats.in_flight or stats.delayed:
        return None
    return stats


def retries_back_off_exactly(stack: Stack, prefix: str) -> tuple[App, LoggedProcess]:
    """``<prefix>.flaky`` fails twice (retry_backoff=1): attempts 1 s, then 2 s apart, never
    earlier and little later, and the third succeeds. Returns the producer and the worker."""
    producer = stack.producer()
    worker = stack.worker(["retries"])
    worker.wait_ready()
    marker = stack.tmp / "flaky.log"

    result = producer.tasks[f"{prefix}.flaky"].apply_async((str(marker), 2), queue="retries")
    assert result.get(timeout=30) == 3, "third attempt succeeds"

    attempts = events(marker, "attempt")
    assert [int(a[2]) for a in attempts] == [1, 2, 3], attempts
    first, second, third = (a[1] for a in attempts)
    assert 1.0 <= second - first <= 1.0 + 1.5, f"first backoff {second - first:.2f}s"
    assert 2.0 <= third - second <= 2.0 + 1.5, f"second backoff {third - second:.2f}s"
    log = worker.log()
    assert "attempt 1 failed (builtins.ConnectionError" in log
    assert "retry in 1.0s" in log and "retry in 2.0s" in log
    return producer, worker


@dataclass
class Stopped:
    """What ``sigterm_while_running`` leaves for the broker-specific checks."""

    producer: App
    worker: LoggedProcess
    slow: AsyncResult
    exited: float
    """``time.monotonic()`` when the worker had exited."""


LEASE_SECONDS = 60
"""Long, so "visible again at once" cannot be the lease running out."""


def sigterm_while_running(stack: Stack, prefix: str) -> Stopped:
    """SIGTERM a ``-c 1 --prefetch 4`` worker while its slow task runs: it exits 0 after
    finishing that task, releases the 4 prefetched ones and runs none of them."""
    producer = stack.producer(queue_lease_seconds=LEASE_SECONDS)
    producer.ensure_queue("term")
    slow_marker, fast_marker = stack.tmp / "slow.log", stack.tmp / "fast.log"
    slow = producer.tasks[f"{prefix}.hold"].apply_async((str(slow_marker), 2.0), queue="term")
    for i in range(4):
        producer.tasks[f"{prefix}.stamp"].apply_async((str(fast_marker), f"fast-{i}"), queue="term")

    worker = stack.worker(["term"], concurrency=1, prefetch=4, queue_lease_seconds=LEASE_SECONDS)
    wait_for(lambda: events(slow_marker, "start"), STARTUP_TIMEOUT, "the slow task started")
    worker.signal(signal.SIGTERM)
    code = worker.wait_exit(30)
    exited = time.monotonic()
    log = worker.log()

    assert code == 0, log
    assert slow.get(timeout=5) == 1, "the running task was finished"
    assert [c for _, _, c in events(slow_marker, "done")] == ["1"]
    released = [int(m.group(1)) for m in worker.find(r"released (\d+) prefetched message")]
    assert released == [4], log
    assert not fast_marker.exists(), "a prefetched task ran after SIGTERM"
    return Stopped(producer, worker, slow, exited)


def fifo_group_order_retry_and_countdown(app: App, resend_first: bool = False) -> None:
    """On ``orders.fifo``: five steps of one group run in order; a flaky task of a group of its
    own retries after its backoff; a countdown is kept. ``resend_first``: the first step is sent
    again with its task id (a re-sent ``delay()``), and must run once (SQS's FIFO dedup)."""
    from cloudq.testing import start_worker
    from cloudq.testing import wait_for as wait_in_process

    seen: list[tuple[str, int]] = []
    lock = threading.Lock()
    failures: dict[str, int] = {}

    @app.task(name="step", queue="orders.fifo", fifo_group=lambda order, step: f"order-{order}")
    def step(order: int, step: int) -> None:
        with lock:
            seen.append((f"order-{order}", step))

    @app.task(
        name="flaky",
        queue="orders.fifo",
        fifo_group="flaky",
        autoretry_for=(ConnectionError,),
        retry_backoff=1,
        max_retries=2,
    )
    def flaky(key: str) -> float:
        failures[key] = failures.get(key, 0) + 1
        if failures[key] == 1:
            raise ConnectionError("once")
        return time.monotonic()

    app.ensure_queue("orders.fifo")
    for i in range(5):
        step.apply_async((1, i), task_id=f"o1-s{i}")
    if resend_first:
        step.apply_async((1, 0), task_id="o1-s0")
    started = time.monotonic()
    retried = flaky.delay("k")
    later = step.apply_async((2, 99), countdown=3)
    with start_worker(app, ["orders.fifo"], concurrency=2, poll_seconds=1):
        done_at = retried.get(timeout=30)
        later.get(timeout=30)
        wait_in_process(lambda: len(seen) == 6, timeout=20, message="all steps ran")
    assert [s for g, s in seen if g == "order-1"] == [0, 1, 2, 3, 4]
    if resend_first:
        assert seen.count(("order-1", 0)) == 1
    assert done_at - started >= 1.0, "the retry ran before its backoff"
    assert failures["k"] == 2
