"""asyncio producer and result reads: ``adelay``, ``aapply_async``, ``aget`` never block the loop.

The decision, in one place: **every send runs the same producer code as ``delay()``** (hooks,
signing, claim checks, routing, batching: ``cloudq.producer.send_envelopes``) on a small thread
pool owned by the app (``SEND_THREADS`` threads, closed by ``app.close()``), awaited with
``loop.run_in_executor``. Why not the SDKs' async clients:

- SQS: aiobotocore is a large dependency pinned to one botocore version (it would pin boto3 for
  every user); boto3 clients are thread-safe, so a few threads serve any number of coroutines.
- Pub/Sub: the adapter publishes with one synchronous ``Publish`` call per request of at most
  1000 messages and 10 MiB (its retries, size checks and partial-send errors around it); the
  batching publisher's futures (``asyncio.wrap_future``) are another client with other batching
  and error semantics: a second send path.
- Service Bus: ``azure.servicebus.aio`` opens a second AMQP connection per event loop beside the
  adapter's own, with a sender and lock of its own per queue: a second send path too.

The rule "one send path" wins until a measurement says the threads cost too much
(``bench/async_producer.py`` measures it).

The bound matters: at most ``SEND_THREADS`` sends run at once per app, the rest wait in the
executor's queue without blocking the loop. Context variables (the current task, for a send from
an async task) travel into the thread.

Result reads: a Redis backend is awaited on ``redis.asyncio`` (pub/sub on the record's channel,
as the sync ``wait``: ``cloudq.results.redis_async``); every other backend is polled, each read
in the executor, the pauses on the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.envelope import Envelope
    from cloudq.result import AsyncResult, GetCall
    from cloudq.results.base import TaskResult

__all__ = ["SEND_THREADS", "aclose", "asend_envelopes", "run_blocking", "wait_for_record"]

T = TypeVar("T")

SEND_THREADS = 8
"""Threads per app for sends and result reads from coroutines: enough to keep a broker's round
trips overlapping under load, few enough that a burst queues instead of opening connections."""
POLL_FIRST_SECONDS = 0.05
POLL_MAX_SECONDS = 0.5
"""``aget`` on a backend without notifications polls with backoff between these."""

_executors: weakref.WeakKeyDictionary[App, ThreadPoolExecutor] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def executor(app: App) -> ThreadPoolExecutor:
    """The app's bounded pool for blocking calls made on behalf of coroutines."""
    pool = _executors.get(app)
    if pool is None:
        with _lock:
            pool = _executors.get(app)
            if pool is None:
                pool = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix=f"cloudq-aio-{app.main}")
                _executors[app] = pool
    return pool


async def run_blocking(app: App, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the app's pool, in a copy of the caller's context."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor(app), call)


async def asend_envelopes(app: App, envelopes: Sequence[Envelope]) -> None:
    """``app.send_envelopes`` awaited: the same code, off the loop."""
    from cloudq.producer import send_envelopes

    await run_blocking(app, send_envelopes, app, envelopes)


def shutdown(app: App) -> None:
    """Close the app's pool (``app.close()`` calls this); a later async send opens a new one."""
    with _lock:
        pool = _executors.pop(app, None)
    if pool is not None:
        pool.shutdown(wait=True)


async def aclose(app: App) -> None:
    """Close what the app holds for this event loop (the async Redis client) and then the app
    itself (``app.close()``, off the loop): the last step of a FastAPI lifespan."""
    from cloudq.results.redis_async import close_clients

    await close_clients(app)
    await asyncio.to_thread(app.close)


async def wait_for_record(result: AsyncResult, call: GetCall) -> TaskResult | None:
    """``AsyncResult._wait`` awaited: the record once ready, or the latest one at the timeout."""
    from cloudq.result import backend_of

    app = result.app
    if "backend" in app.__dict__:
        backend = backend_of(app)
    else:  # opening it imports the client library and may connect: not on the loop
        backend = await run_blocking(app, backend_of, app)
    deadline = None if call.timeout is None else time.monotonic() + call.timeout
    follow = call.propagate and call.follow_parents and result.parent is not None
    while True:
        if follow:
            await run_blocking(app, result._raise_parent_error)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        step = left
        if follow:
            pace = max(call.interval, 0.01)
            step = pace if left is None else min(pace, left)
        record: TaskResult | None = await _wait_backend(app, backend, result.id, step)
        if (record is not None and record.ready) or left == 0.0 or not follow:
            return record


async def _wait_backend(app: App, backend: Any, task_id: str, timeout: float | None) -> Any:
    from cloudq.results.redis import RedisBackend

    if isinstance(backend, RedisBackend):
        from cloudq.results.redis_async import wait_redis

        return await wait_redis(app, backend, task_id, timeout)
    return await poll(app, backend, task_id, timeout)


async def poll(app: App, backend: Any, task_id: str, timeout: float | None) -> Any:
    """Read in the executor, sleep on the loop, with backoff (``poll_until_ready`` awaited)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = POLL_FIRST_SECONDS
    while True:
        record = await run_blocking(app, backend.get, task_id)
        if record is not None and record.ready:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            return record
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        await asyncio.sleep(pause if left is None else min(pause, left))
        pause = min(pause * 1.5, POLL_MAX_SECONDS)
