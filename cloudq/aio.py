"""asyncio producer and result reads: ``adelay``, ``aapply_async``, ``aget`` never block the loop.

The decision, in one place: a send from a coroutine runs **the same preparation as ``delay()``**
(``cloudq.producer.prepare``: hooks, priority routing, signing, claim checks, delay planning,
batching), then hands the batches over one of two ways:

- **natively**, where the broker has an async sender (``AsyncSending.open_async_sender`` in
  ``cloudq.adapters.base``): the preparation runs on the loop (it is CPU work of microseconds),
  then each batch is awaited on the SDK's async client, one per event loop, opened lazily on
  it and closed by ``aclose(app)``. Service Bus (``azure.servicebus.aio``) and Pub/Sub
  (``PublisherAsyncClient``) have one. Two steps that may block still go to the thread pool:
  creating a queue the first time (``ensure``), and a send with claim checks configured (its
  preparation may park a body in the object store).
- **on the app's bounded thread pool** (``SEND_THREADS`` threads, closed by ``app.close()``,
  awaited with ``loop.run_in_executor``) for every other broker: the whole sync send. SQS is one:
  aiobotocore pins botocore to a narrow range that excludes the version boto3 needs (it would
  pin or downgrade boto3 for every user), and boto3's clients are thread-safe, so a few threads
  serve any number of coroutines (``bench/async_producer.py`` measures what the hop costs).

The bound matters: at most ``SEND_THREADS`` blocking sends run at once per app, the rest wait in
the executor's queue without blocking the loop. Context variables (the current task, for a send
from an async task) travel into the thread.

Result reads: a Redis backend is awaited on ``redis.asyncio`` (pub/sub on the record's channel,
as the sync ``wait``: ``cloudq.results.redis_async``); every other backend is polled, each read
in the executor, the pauses on the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from cloudq.adapters.base import AsyncSender
    from cloudq.app import App
    from cloudq.envelope import Envelope
    from cloudq.result import AsyncResult, GetCall
    from cloudq.results.base import TaskResult

__all__ = [
    "SEND_THREADS",
    "aclose",
    "asend_envelopes",
    "async_sender",
    "run_blocking",
    "wait_for_record",
]

T = TypeVar("T")

SEND_THREADS = 8
"""Threads per app for sends and result reads from coroutines: enough to keep a broker's round
trips overlapping under load, few enough that a burst queues instead of opening connections."""
POLL_FIRST_SECONDS = 0.05
POLL_MAX_SECONDS = 0.5
"""``aget`` on a backend without notifications polls with backoff between these."""

_executors: weakref.WeakKeyDictionary[App, ThreadPoolExecutor] = weakref.WeakKeyDictionary()
_senders: weakref.WeakKeyDictionary[
    App, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncSender]
] = weakref.WeakKeyDictionary()
"""Each app's native async senders, one per event loop (an async client's connection belongs
to the loop it was opened on)."""
_closed_senders: weakref.WeakSet[AsyncSender] = weakref.WeakSet()
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


async def asend_envelopes(app: App, envelopes: Sequence[Envelope], dedup_suffix: str = "") -> None:
    """``app.send_envelopes`` awaited: one preparation (``cloudq.producer.prepare``), handed to
    the broker's async sender where it has one, else the whole send on the app's threads."""
    from cloudq import producer

    sender = await async_sender(app)
    if sender is None:
        await run_blocking(app, producer.send_envelopes, app, envelopes, dedup_suffix)
        return
    if app.conf.claim_check_url:  # preparing may put a body in the object store
        prepared = await run_blocking(app, producer.prepare, app, envelopes, dedup_suffix)
    else:
        prepared = producer.prepare(app, envelopes, dedup_suffix)
    if not all(app.queue_ensured(queue) for queue in prepared.queues):
        await run_blocking(app, producer.ensure_queues, app, prepared)
    for queue, messages in prepared.batches:
        await sender.send(queue, messages)
    producer.published(app, prepared)


async def async_sender(app: App) -> AsyncSender | None:
    """The app's native sender for the running loop, opened at first use; ``None`` when its
    broker has none (its sends then run on the thread pool)."""
    if "broker" not in app.__dict__:  # opening it imports the SDK and may connect: not here
        await run_blocking(app, getattr, app, "broker")
    opener = getattr(app.broker, "open_async_sender", None)
    if opener is None:
        return None
    loop = asyncio.get_running_loop()
    with _lock:
        per_loop = _senders.setdefault(app, weakref.WeakKeyDictionary())
        sender = per_loop.get(loop)
        opened = sender is None
        if opened:
            sender = opener()
            if sender is not None:
                per_loop[loop] = sender
    taskloop = sys.modules.get("cloudq.taskloop")
    if opened and sender is not None and taskloop is not None:
        # On a worker's task loop (an async task sending): closed with the loop at stop.
        taskloop.close_with_task_loop(functools.partial(_forget_and_close, app, loop, sender))
    return sender


async def _forget_and_close(app: App, loop: asyncio.AbstractEventLoop, sender: AsyncSender) -> None:
    with _lock:
        per_loop = _senders.get(app)
        if per_loop is not None and per_loop.get(loop) is sender:
            del per_loop[loop]
    await _aclose_sender(sender)


async def _aclose_sender(sender: AsyncSender) -> None:
    """Close a sender once, whichever of ``aclose``, ``shutdown`` or its task loop comes first."""
    with _lock:
        if sender in _closed_senders:
            return
        _closed_senders.add(sender)
    await sender.aclose()


def shutdown(app: App) -> None:
    """Close the app's pool (``app.close()`` calls this); a later async send opens a new one.
    Native senders still open are closed on their own loops, if those still run."""
    with _lock:
        pool = _executors.pop(app, None)
        senders = dict(_senders.pop(app, {}))
    for loop, sender in senders.items():
        if not loop.is_closed() and loop.is_running():
            asyncio.run_coroutine_threadsafe(_aclose_sender(sender), loop)
    if pool is not None:
        pool.shutdown(wait=True)


async def aclose(app: App) -> None:
    """Close what the app holds for this event loop (its native async sender, the async Redis
    client) and then the app itself (``app.close()``, off the loop): the last step of a FastAPI
    lifespan."""
    from cloudq.results.redis_async import close_clients

    with _lock:
        per_loop = _senders.get(app)
        sender = None if per_loop is None else per_loop.pop(asyncio.get_running_loop(), None)
    if sender is not None:
        await _aclose_sender(sender)
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
