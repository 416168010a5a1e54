"""One event loop per thread for ``async def`` tasks, kept from task to task.

``asyncio.run`` per task (what cloudq did before) makes and closes a loop each time, so nothing
bound to a loop (an ``httpx.AsyncClient``, an asyncpg pool) outlives one task. Here each thread
that runs tasks (a threads-pool slot, a processes-pool child's main thread, the caller of
``apply()``, a serverless handler) keeps an ``asyncio.Runner``; every task runs on it in a copy of
the caller's context (so ``current_request`` is the task's own).

Shared clients: ``PerLoop(factory, close)`` gives each task loop its own instance, made on first
use and closed with the loop (an asyncio client must not cross loops, and a threads pool has one
loop per slot). ``run_on_task_loop(coro)`` runs a coroutine on this thread's task loop: in a
processes-pool child, a ``worker_process_init`` receiver runs on the thread that runs the tasks.

Loops are closed when the worker stops (the ``worker_stop`` / ``process_stop`` hooks, through a
middleware added to the app the first time one of its async tasks runs) and at interpreter exit.
An exception forced into the thread from outside the coroutine (a hard time limit's backstop, a
``revoke --terminate``) may have landed in the loop's own code: that loop is closed and the next
task gets a fresh one (its ``PerLoop`` instances are made again).
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from cloudq.logsafe import get_logger
from cloudq.middleware import Middleware

if TYPE_CHECKING:
    from cloudq.app import App

__all__ = ["PerLoop", "close_all", "close_with_task_loop", "run", "run_on_task_loop"]

logger = get_logger("cloudq.taskloop")

T = TypeVar("T")

_local = threading.local()
_lock = threading.Lock()
_runners: set[asyncio.Runner] = set()
"""Every open task loop of this process, to close them all at stop."""
_closers: dict[asyncio.AbstractEventLoop, list[Callable[[], Awaitable[Any]]]] = {}
"""Per loop: how to close the ``PerLoop`` instances made on it, newest first."""
_hooked: weakref.WeakSet[App] = weakref.WeakSet()
_closed: weakref.WeakSet[asyncio.Runner] = weakref.WeakSet()
"""Runners closed by ``close_all`` from another thread: their own thread makes a new one."""


def _runner() -> asyncio.Runner:
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None or runner in _closed:
        # loop_factory: the runner must not set (nor, from another thread at stop, unset) the
        # thread's current event loop; a loop is the running one while a task runs anyway.
        runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        _local.runner = runner
        with _lock:
            _runners.add(runner)
    return runner


async def _guarded(coro: Awaitable[T]) -> tuple[bool, Any]:
    """The coroutine's value or its own exception, as data: an exception out of ``run`` then
    means one forced in outside the coroutine."""
    try:
        return True, await coro
    except BaseException as exc:  # noqa: BLE001 - re-raised by ``run``, after the loop's check
        return False, exc


def run_on_task_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end on this thread's task loop (made if needed)."""
    runner = _runner()
    try:
        ok, value = runner.run(_guarded(coro), context=contextvars.copy_context())
    except BaseException:
        _discard(runner)
        raise
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def run(app: App, coro: Coroutine[Any, Any, T]) -> T:
    """An async task's body on this thread's loop (``cloudq.execute`` calls this)."""
    if app not in _hooked:
        with _lock:
            if app not in _hooked:
                _hooked.add(app)
                app.add_middleware(_LoopCloser())
    return run_on_task_loop(coro)


def _discard(runner: asyncio.Runner) -> None:
    if getattr(_local, "runner", None) is runner:
        _local.runner = None
    logger.warning("a task's event loop was interrupted outside its coroutine: replaced")
    _close(runner)


def _close(runner: asyncio.Runner) -> None:
    with _lock:
        _runners.discard(runner)
        _closed.add(runner)
    try:
        loop = runner.get_loop()
    except RuntimeError:  # closed already
        return
    if loop.is_running():
        logger.warning("a task's event loop is still running at stop; left open")
        return
    with _lock:
        closers = _closers.pop(loop, [])
    try:
        for close in closers:
            try:
                runner.run(_as_coroutine(close()))
            except Exception:
                logger.exception("closing a PerLoop value failed")
    finally:
        runner.close()


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def close_all() -> None:
    """Close every task loop of this process that is not running (worker stop, exit)."""
    with _lock:
        runners = list(_runners)
    for runner in runners:
        _close(runner)
    _local.runner = None


atexit.register(close_all)


class _LoopCloser(Middleware):
    """Closes the task loops when the worker (threads pool) or a pool child stops."""

    def worker_stop(self, app: App, **kwargs: Any) -> None:
        close_all()

    def process_stop(self, app: App, **kwargs: Any) -> None:
        close_all()


def close_with_task_loop(close: Callable[[], Awaitable[Any]]) -> bool:
    """Await ``close()`` when the running loop closes, if it is this thread's task loop (as a
    ``PerLoop`` value is closed): ``cloudq.aio``'s native senders opened by async tasks. False
    if the running loop is not a task loop (its owner closes what it opened)."""
    loop = asyncio.get_running_loop()
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None or runner in _closed:
        return False
    try:
        if runner.get_loop() is not loop:  # running here, so initialized: makes no loop
            return False
    except RuntimeError:  # closed
        return False
    with _lock:
        _closers.setdefault(loop, []).insert(0, close)
    return True


class PerLoop(Generic[T]):
    """One ``factory()`` per task loop: ``http = PerLoop(httpx.AsyncClient, lambda c: c.aclose())``
    at module level, ``await http.get().get(url)`` in an async task. Made on first use on each
    loop, closed (``close(value)``, awaited) when the loop closes at worker stop."""

    def __init__(
        self, factory: Callable[[], T], close: Callable[[T], Awaitable[Any]] | None = None
    ) -> None:
        self._factory = factory
        self._close = close
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        """This loop's instance (call it inside a coroutine)."""
        loop = asyncio.get_running_loop()
        if loop in self._values:
            return self._values[loop]
        value = self._factory()
        self._values[loop] = value
        if self._close is not None:
            close = self._close
            with _lock:
                _closers.setdefault(loop, []).insert(0, lambda: close(value))
        return value
