"""Soft and hard time limits for the code running a task, wherever it runs.

In a process's main thread a ``SIGALRM`` timer raises inside the task, even in ``time.sleep``.
In any other thread the exception is injected with ``PyThreadState_SetAsyncExc``: it fires at
the task's next Python bytecode, so a thread blocked in C code is only interrupted when that call
returns. That is why hard limits are guaranteed only by the processes pool, which kills the
child outright; the threads pool makes a best effort and says so in the worker's docs.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from cloudq.errors import SoftTimeLimitExceeded, TimeLimitExceeded

T = TypeVar("T")


def _inject(thread_id: int, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )


def _clear(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


@contextmanager
def _thread_limits(soft: float | None, hard: float | None) -> Iterator[None]:
    tid = threading.get_ident()
    lock = threading.Lock()
    active = True

    def fire(exc_type: type[BaseException]) -> None:
        with lock:
            if active:
                _inject(tid, exc_type)

    timers = []
    if soft is not None:
        timers.append(threading.Timer(soft, fire, (SoftTimeLimitExceeded,)))
    if hard is not None:
        timers.append(threading.Timer(hard, fire, (TimeLimitExceeded,)))
    for timer in timers:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        with lock:
            active = False
            for timer in timers:
                timer.cancel()
            _clear(tid)


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


def run_with_limits(fn: Callable[[], T], soft: float | None, hard: float | None) -> T:
    """Run ``fn``: raises SoftTimeLimitExceeded at ``soft``, TimeLimitExceeded at ``hard``."""
    in_main = threading.current_thread() is threading.main_thread()
    limits = _signal_limits if in_main and hasattr(signal, "setitimer") else _thread_limits
    with limits(soft, hard):
        return fn()
