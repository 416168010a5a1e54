"""Time limits in pool threads: one shared watchdog thread fires them, cancelled ones never fire."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from cloudq import time_limits
from cloudq.errors import SoftTimeLimitExceeded, TimeLimitExceeded


def busy(seconds: float) -> Callable[[], str]:
    """Python bytecode running for up to ``seconds`` (an injected exception lands in it)."""

    def run() -> str:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.001)
        return "finished"

    return run


def in_thread(fn: Callable[[], object]) -> object:
    """Run ``fn`` in a fresh (non-main) thread: what the thread pool does; returns its result
    or the exception it raised."""
    out: list[object] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the limit never fired"
    return out[0]


def test_soft_limit_fires_in_a_pool_thread() -> None:
    result = in_thread(lambda: time_limits.run_with_limits(busy(5), 0.05, 1.0))
    assert isinstance(result, SoftTimeLimitExceeded)


def test_hard_limit_fires_in_a_pool_thread() -> None:
    result = in_thread(lambda: time_limits.run_with_limits(busy(5), None, 0.05))
    assert isinstance(result, TimeLimitExceeded)


def test_a_soft_limit_caught_by_the_task_is_followed_by_the_hard_one() -> None:
    def task() -> str:
        try:
            return busy(5)()
        except SoftTimeLimitExceeded:
            return busy(5)()  # cleans up too slowly

    result = in_thread(lambda: time_limits.run_with_limits(task, 0.05, 0.2))
    assert isinstance(result, TimeLimitExceeded)


def test_limits_of_finished_tasks_never_fire_later() -> None:
    def many_then_wait() -> str:
        for _ in range(200):
            time_limits.run_with_limits(lambda: None, 0.02, 0.03)
        return busy(0.2)()  # well past every deadline armed above

    assert in_thread(many_then_wait) == "finished"


def test_cancelled_limits_do_not_pile_up(monkeypatch: pytest.MonkeyPatch) -> None:
    watchdog = time_limits._Watchdog()
    monkeypatch.setattr(time_limits, "_WATCHDOG", watchdog)
    runs = 5 * time_limits.COMPACT_MIN
    for _ in range(runs):
        time_limits.run_with_limits(lambda: None, 3600.0, 3600.0)
    assert len(watchdog._heap) <= 2 * time_limits.COMPACT_MIN + 2, len(watchdog._heap)


def test_limits_fire_in_a_forked_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork copies the watchdog but not its thread: the child starts its own."""
    watchdog = time_limits._Watchdog()
    monkeypatch.setattr(time_limits, "_WATCHDOG", watchdog)
    assert in_thread(lambda: time_limits.run_with_limits(lambda: "ok", None, 60.0)) == "ok"
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the hard limit fired here
        fired = in_thread(lambda: time_limits.run_with_limits(busy(5), None, 0.05))
        os._exit(0 if isinstance(fired, TimeLimitExceeded) else 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, "the limit did not fire in the child"
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's limit never fired")


def test_arming_does_not_wake_the_watchdog_for_a_later_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pool thread that waits between tasks gives the watchdog the GIL there: finding only
    cancelled entries then must not leave it asleep on an empty heap, for every next arm to
    wake it (a context switch per task under load)."""
    watchdog = time_limits._Watchdog()
    monkeypatch.setattr(time_limits, "_WATCHDOG", watchdog)
    wakes = [0]
    real_notify = watchdog._cond.notify

    def counting_notify(n: int = 1) -> None:
        wakes[0] += 1
        real_notify(n)

    monkeypatch.setattr(watchdog._cond, "notify", counting_notify)

    runs = 3 * time_limits.COMPACT_MIN  # past a compaction, which empties the heap

    def tasks() -> str:
        for _ in range(runs):
            time_limits.run_with_limits(lambda: None, None, 300.0)
            time.sleep(0.00005)  # between tasks, as a pool thread waits for the next
        return "done"

    assert in_thread(tasks) == "done"
    assert wakes[0] <= 5, f"the watchdog was woken {wakes[0]} times for {runs} tasks"
