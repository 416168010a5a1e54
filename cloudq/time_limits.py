"""Soft and hard time limits for the code running a task, wherever it runs.

In a process's main thread a ``SIGALRM`` timer raises inside the task, even in ``time.sleep``.
In any other thread the exception is injected with ``PyThreadState_SetAsyncExc``: it fires at
the task's next Python bytecode, so a thread blocked in C code is only interrupted when that call
returns. That is why hard limits are guaranteed only by the processes pool, which kills the
child outright; the threads pool makes a best effort and says so in the worker's docs.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from cloudq.errors import SoftTimeLimitExceeded, TimeLimitExceeded

T = TypeVar("T")

COMPACT_MIN = 1024
"""Cancelled limits are swept from the watchdog's heap once more than this many (and most of it)."""


def _inject(thread_id: int, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )


def _clear(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


_Entry = tuple[float, int, "_Armed", type[BaseException]]
"""A heap entry: deadline, sequence (ties), the task's arming, the exception to raise."""
_SOFT: type[BaseException] = SoftTimeLimitExceeded
_HARD: type[BaseException] = TimeLimitExceeded


class _Watchdog:
    """One thread that fires every thread-pool task's time limits.

    Why not a ``threading.Timer`` per limit: that starts (and tears down) one or two threads for
    every task, a measurable share of a busy worker's CPU. Here a task's limits are two heap
    entries and cancelling one is a flag; cancelled entries are dropped when the heap is mostly
    dead, so a long default limit does not let them pile up.
    """

    def __init__(self) -> None:
        self._seq = itertools.count()
        self._reset()
        # A forked child has this object but not its thread (nor its parent's tasks, nor a
        # usable lock): reset there once rather than a getpid() system call on every task.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Arming and disarming (twice per task) take the plain lock: ``with`` on the Condition
        # goes through its Python-level ``__enter__``/``__exit__``.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._heap: list[_Entry] = []
        self._armed: dict[int, _Armed] = {}
        """Thread id -> the limits of the task it runs now (for ``interrupt``)."""
        self._cancelled = 0
        self._running = False
        self._wake_at = math.inf
        """When the thread wakes next on its own: an arm wakes it only for an earlier deadline."""

    def arm(self, tid: int, soft: float | None, hard: float | None) -> _Armed:
        armed = _Armed(tid)
        now = time.monotonic()
        with self._lock:
            self._armed[tid] = armed
            heap = self._heap
            if soft is not None:
                heapq.heappush(heap, (now + soft, next(self._seq), armed, _SOFT))
                armed.entries += 1
            if hard is not None:
                heapq.heappush(heap, (now + hard, next(self._seq), armed, _HARD))
                armed.entries += 1
            if not self._running:
                threading.Thread(target=self._run, name="cloudq-time-limits", daemon=True).start()
                self._running = True
            elif heap[0][0] < self._wake_at:
                self._cond.notify()
        return armed

    def disarm(self, armed: _Armed) -> None:
        """After this returns the limits never fire (checked under the same lock as firing)."""
        with self._lock:
            armed.active = False
            if self._armed.get(armed.tid) is armed:
                del self._armed[armed.tid]
            self._cancelled += armed.entries
            if self._cancelled > COMPACT_MIN and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2].active]
                heapq.heapify(self._heap)
                self._cancelled = 0
        if armed.fired:  # an exception injected but not yet raised must not hit the next task
            _clear(armed.tid)

    def interrupt(self, tid: int, exc_type: type[BaseException]) -> bool:
        """Raise ``exc_type`` in the task thread ``tid`` runs now; False if it runs none. Under
        the lock ``disarm`` takes, so it never reaches the thread's next task."""
        with self._lock:
            armed = self._armed.get(tid)
            if armed is None or not armed.active:
                return False
            armed.fired = True
            _inject(tid, exc_type)
            return True

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                heap = self._heap
                while heap and heap[0][0] <= now:
                    _, _, armed, exc_type = heapq.heappop(heap)
                    if armed.active:
                        armed.fired = True
                        _inject(armed.tid, exc_type)
                    else:
                        self._cancelled = max(0, self._cancelled - 1)
                # Asleep until the earliest deadline, even a cancelled one's: dropping cancelled
                # entries early would empty the heap, and then every task's arm would have to
                # wake this thread (a context switch per task under load).
                self._wake_at = heap[0][0] if heap else math.inf
                self._cond.wait(self._wake_at - now if heap else None)


class _Armed:
    __slots__ = ("active", "entries", "fired", "tid")

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self.active = True
        self.fired = False
        self.entries = 0


_WATCHDOG = _Watchdog()


@contextmanager
def _signal_limits(soft: float | None, hard: float | None) -> Iterator[None]:
    fired: list[type[BaseException]] = []

    def on_alarm(signum: int, frame: Any) -> None:
        if soft is not None and not fired:
            fired.append(SoftTimeLimitExceeded)
            if hard is not None and hard > soft:
                signal.setitimer(signal.ITIMER_REAL, hard - soft)
            raise SoftTimeLimitExceeded(f"soft time limit ({soft}s) exceeded")
        fired.append(TimeLimitExceeded)
        raise TimeLimitExceeded(f"hard time limit ({hard}s) exceeded")

    first = soft if soft is not None else hard
    previous = signal.signal(signal.SIGALRM, on_alarm)
    if first is not None:
        signal.setitimer(signal.ITIMER_REAL, first)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def interrupt(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Raise ``exc_type`` inside the thread-pool task running on ``thread_id`` (at its next
    Python instruction, as a time limit); False if that thread runs no task now."""
    return _WATCHDOG.interrupt(thread_id, exc_type)


def run_with_limits(fn: Callable[[], T], soft: float | None, hard: float | None) -> T:
    """Run ``fn``: raises SoftTimeLimitExceeded at ``soft``, TimeLimitExceeded at ``hard``."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        with _signal_limits(soft, hard):
            return fn()
    # Any other thread: the watchdog. Plain try/finally, not a context manager: once per task.
    if soft is None and hard is None:
        return fn()
    armed = _WATCHDOG.arm(threading.get_ident(), soft, hard)
    try:
        return fn()
    finally:
        _WATCHDOG.disarm(armed)
