"""The worker for real: threads and processes pools, limits, recycling, crashes, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cloudq import App, State
from cloudq.errors import ConfigurationError, TimeLimitExceeded
from cloudq.testing import start_worker, wait_for
from cloudq.worker import Worker
from tests.apps import pool_app

ROOT = Path(__file__).resolve().parents[2]


def fresh_app(**settings: object) -> App:
    name = uuid.uuid4().hex
    return App("t", broker=f"memory://{name}", backend=f"memory://{name}", **settings)  # type: ignore[arg-type]


def test_worker_refuses_to_start_without_queues() -> None:
    with pytest.raises(ConfigurationError, match="queues named explicitly"):
        Worker(fresh_app(), [])


def test_first_queue_drains_first_and_the_last_is_not_starved() -> None:
    app = fresh_app(worker_fairness_rounds=5)
    order: list[str] = []

    @app.task
    def job(label: str) -> None:
        order.append(label)

    for i in range(20):
        job.apply_async((f"high-{i}",), queue="high")
    job.apply_async(("low",), queue="low")
    with start_worker(app, ["high", "low"], concurrency=1, prefetch=0):
        wait_for(lambda: len(order) == 21, timeout=10, message="all 21 tasks run")
    assert order.index("low") < 20, "the low queue waited for the whole high queue"
    assert order[:4] == ["high-0", "high-1", "high-2", "high-3"]

    order.clear()
    for i in range(3):
        job.apply_async((f"low-{i}",), queue="low")
        job.apply_async((f"high-{i}",), queue="high")
    with start_worker(app, ["high", "low"], concurrency=1, prefetch=0):
        wait_for(lambda: len(order) == 6, timeout=10, message="all 6 tasks run")
    assert order == ["high-0", "high-1", "high-2", "low-0", "low-1", "low-2"]


def test_threads_pool_soft_and_hard_limits() -> None:
    app = pool_app.app
    with start_worker(app, ["default"], concurrency=2):
        soft = pool_app.soft.delay()
        hard = pool_app.spin_hard.delay()
        assert soft.get(timeout=10) == "cleaned up"
        with pytest.raises(TimeLimitExceeded):  # cloudq's own class, rebuilt
            hard.get(timeout=10)


@pytest.mark.parametrize("task_name", ["sleep_hard", "deaf_hard"])
def test_processes_pool_hard_limit_kills_and_dead_letters(task_name: str) -> None:
    app = pool_app.app
    with start_worker(app, ["default"], concurrency=1, pool="processes") as worker:
        result = app.tasks[task_name].delay()
        with pytest.raises(TimeLimitExceeded) as info:  # cloudq's own class, rebuilt
            result.get(timeout=20)
        assert "hard time limit" in str(info.value)
        # The pool is usable afterwards (a replaced child runs the next task).
        assert isinstance(pool_app.pid.delay().get(timeout=20), int)
        assert worker.failed == 1


def test_processes_pool_soft_limit_in_child() -> None:
    with start_worker(pool_app.app, ["default"], concurrency=1, pool="processes"):
        assert pool_app.soft.delay().get(timeout=20) == "cleaned up"


def test_max_tasks_per_child_recycles_children() -> None:
    with start_worker(
        pool_app.app, ["default"], concurrency=1, pool="processes", max_tasks_per_child=2
    ):
        pids = [pool_app.pid.delay().get(timeout=20) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert os.getpid() not in pids


def test_sigkilled_child_is_a_failed_attempt_retried_by_policy(tmp_path: Path) -> None:
    """A child killed mid-task (OOM killer, a segfault) is a failed attempt: retried after the
    task's backoff as attempt 2, and dead-lettered with WorkerLostError once retries run out."""
    marker = tmp_path / "crash.pid"
    with start_worker(pool_app.app, ["default"], concurrency=1, pool="processes"):
        result = pool_app.crash_once.delay(str(marker))
        wait_for(marker.exists, timeout=20, message="task started in a child")
        victim = int(marker.read_text())
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        assert result.get(timeout=20) == 2, "retried once, as attempt 2"
        assert time.monotonic() - killed_at >= 0.4, "retried before its backoff"
        assert result.state == State.SUCCESS


def test_lease_is_extended_while_a_task_runs(tmp_path: Path) -> None:
    """A task three times longer than the lease is not redelivered to a second slot."""
    marker = tmp_path / "runs.log"
    app = pool_app.app
    with start_worker(app, ["default"], concurrency=2):
        first = pool_app.slow.delay(4.5, str(tmp_path / "slow.done"))
        pool_app.record.delay(str(marker), "other")
        first.get(timeout=20)
    assert app.broker.stats("default").in_flight == 0
    assert marker.read_text() == "other\n"


def test_sigterm_finishes_running_releases_prefetched_exits_zero(tmp_path: Path) -> None:
    env = {**os.environ, "POOL_APP_SEED": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudq.cli",
            "-A",
            "tests.apps.pool_app",
            "worker",
            "-Q",
            "default",
            "-c",
            "1",
            "--prefetch",
            "3",
            "-l",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stderr is not None
        for line in proc.stderr:  # ends at EOF if the worker dies: then the asserts below fail
            lines.append(line)
            if "slow task running" in line:
                break  # the slow task (1.5 s) is running, the 3 fast ones are prefetched
        proc.send_signal(signal.SIGTERM)
        out = "".join(lines) + proc.stderr.read()
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    assert code == 0, out
    assert (tmp_path / "slow.done").read_text() == "done", "in-flight task was not finished"
    assert "released 3 prefetched message(s)" in out
    assert not (tmp_path / "fast.log").exists(), "prefetched tasks ran after SIGTERM"


def test_fifo_group_runs_one_at_a_time_in_order() -> None:
    import random
    import threading as th

    app = fresh_app()
    order: list[tuple[str, int]] = []
    running: dict[str, int] = {}
    overlap: list[str] = []
    lock = th.Lock()

    @app.task(queue="jobs.fifo", fifo_group=lambda group, n: group)
    def step(group: str, n: int) -> None:
        with lock:
            running[group] = running.get(group, 0) + 1
            if running[group] > 1:
                overlap.append(group)
        time.sleep(random.uniform(0, 0.02))
        with lock:
            running[group] -= 1
            order.append((group, n))

    for n in range(8):
        for group in ("a", "b"):
            step.delay(group, n)
    with start_worker(app, ["jobs.fifo"], concurrency=4):
        wait_for(lambda: len(order) == 16, timeout=10, message="16 steps")
    assert overlap == []
    for group in ("a", "b"):
        assert [n for g, n in order if g == group] == list(range(8))


def test_successes_are_counted_in_a_periodic_info_line_not_logged_one_by_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import cloudq.worker

    monkeypatch.setattr(cloudq.worker, "ACTIVITY_LOG_SECONDS", 0.2)
    app = fresh_app()

    @app.task(max_retries=0)
    def job(fail: bool) -> None:
        if fail:
            raise ValueError("boom")

    for i in range(5):
        job.delay(i == 0)
    caplog.set_level(logging.INFO)
    import re

    def counts() -> tuple[int, int, int]:
        found = [
            re.match(r"(\d+) task\(s\) done in the last \S+ \((\d+) failed\)", r.getMessage())
            for r in caplog.records
        ]
        lines = [(int(m[1]), int(m[2])) for m in found if m]
        return sum(d for d, _ in lines), sum(f for _, f in lines), len(lines)

    with start_worker(app, ["default"], concurrency=2):
        wait_for(lambda: counts()[0] == 5, timeout=10, message="the worker's activity lines")
        time.sleep(0.5)  # idle for two intervals: no more lines (this is the check, not a wait)
    done, failed, lines = counts()
    assert (done, failed) == (5, 1), caplog.text
    assert lines <= 2, f"an idle worker logs no activity line: {lines} lines"
    succeeded = [r for r in caplog.records if "succeeded in" in r.getMessage()]
    assert succeeded == [], "a success is a DEBUG line"


def test_an_ack_with_little_lease_left_goes_out_at_once_not_with_the_batch() -> None:
    from cloudq.adapters.base import OutgoingMessage
    from cloudq.clock import FakeClock
    from cloudq.worker import _Acker

    clock = FakeClock()
    app = App("acks", broker=f"memory://{uuid.uuid4().hex}", clock=clock)
    app.ensure_queue("q")
    app.broker.send("q", [OutgoingMessage(b"a"), OutgoingMessage(b"b")])
    first, second = app.broker.receive("q", 2, 0, 30)
    acker = _Acker(app, lease=30)
    acker(first)  # 30 s left: waits for a batch (or the housekeeping flush)
    assert app.broker.stats("q").in_flight == 2
    clock.advance(16)  # less than half of the lease left on the second
    acker(second)  # goes out now, and takes the pending one with it
    assert app.broker.stats("q").in_flight == 0


def test_an_ack_after_the_lease_ran_out_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from cloudq.adapters.base import OutgoingMessage
    from cloudq.clock import FakeClock
    from cloudq.worker import _Acker

    clock = FakeClock()
    app = App("acks", broker=f"memory://{uuid.uuid4().hex}", clock=clock)
    app.ensure_queue("q")
    app.broker.send("q", [OutgoingMessage(b"late", message_id="m-late")])
    [late] = app.broker.receive("q", 1, 0, 30)
    clock.advance(31)
    with caplog.at_level("WARNING", logger="cloudq.worker"):
        _Acker(app, lease=30)(late)
    assert "task m-late finished 1.0s after its lease ran out" in caplog.text


def test_an_idle_worker_sleeps_yet_acks_a_lone_task_promptly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Housekeeping wakes for a pending ack, not on a 50 ms clock: an idle worker wakes about
    once a second (it used to wake 20 times), and a lone task's ack still goes out at once."""
    from cloudq.worker import _Acker

    flushes = [0]
    real_flush = _Acker.flush

    def counting_flush(self: _Acker) -> None:
        flushes[0] += 1
        real_flush(self)

    monkeypatch.setattr(_Acker, "flush", counting_flush)
    app = fresh_app()
    ran: list[int] = []

    @app.task
    def lone(x: int) -> None:
        ran.append(x)

    with start_worker(app, concurrency=1) as worker:
        wait_for(lambda: flushes[0] >= 1, timeout=10, message="the first housekeeping round")
        start = flushes[0]
        time.sleep(1.0)  # observing that nothing happens takes a window of time
        idle = flushes[0] - start
        lone.delay(1)
        wait_for(
            lambda: ran == [1] and app.broker.stats("default").in_flight == 0,
            timeout=5,
            message="the lone task run and acknowledged",
        )
        assert worker.processed == 1
    assert idle <= 3, f"an idle worker flushed {idle} times in a second"
