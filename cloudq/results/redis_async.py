"""``aget`` on a Redis backend: the sync ``RedisBackend.wait`` protocol on ``redis.asyncio``.

Same keys, same channel, same order (subscribe, confirmation, re-read the key, then sleep on the
channel with a re-read every ``recheck_interval``), so a store landing at any moment is seen.
One client per app and event loop (an asyncio connection belongs to its loop), made on first
use and closed by ``cloudq.aio.aclose(app)``. Falls back to polling when pub/sub is refused.
"""

from __future__ import annotations

import time
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from typing import TYPE_CHECKING, Any

from cloudq.results.redis import DEFAULT_OPTIONS, RedisBackend, split_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from cloudq.app import App
    from cloudq.results.base import TaskResult

__all__ = ["close_clients", "wait_redis"]

_clients: weakref.WeakKeyDictionary[AbstractEventLoop, weakref.WeakKeyDictionary[App, Redis]] = (
    weakref.WeakKeyDictionary()
)


def client_for(app: App) -> Redis:
    """This loop's async client for the app's result backend URL (no connection made yet)."""
    from redis.asyncio import Redis

    loop = get_running_loop()
    per_app = _clients.setdefault(loop, weakref.WeakKeyDictionary())
    client = per_app.get(app)
    if client is None:
        url, _ = split_url(app.conf.result_backend or "")
        client = Redis.from_url(url, **DEFAULT_OPTIONS)
        per_app[app] = client
    return client


async def close_clients(app: App) -> None:
    """Close the app's client on the running loop, if it has one."""
    per_app = _clients.get(get_running_loop())
    client = per_app.pop(app, None) if per_app is not None else None
    if client is not None:
        await client.aclose()


async def _get(backend: RedisBackend, client: Redis, task_id: str) -> TaskResult | None:
    with backend._errors("get", task_id):
        raw = await client.get(backend.key(task_id))
    return None if raw is None else backend._decode(task_id, raw)


def _left(deadline: float | None, cap: float) -> float:
    return cap if deadline is None else min(cap, max(0.0, deadline - time.monotonic()))


async def wait_redis(
    app: App, backend: RedisBackend, task_id: str, timeout: float | None
) -> TaskResult | None:
    """The record once ready, or the latest one when ``timeout`` passes."""
    import redis

    from cloudq import aio

    client = client_for(app)
    if timeout is not None and timeout <= 0:
        return await _get(backend, client, task_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    pubsub: Any = client.pubsub(ignore_subscribe_messages=False)
    try:
        await pubsub.subscribe(backend.key(task_id))
        while True:  # SUBSCRIBE in force before the re-read, or a store in between is missed
            message = await pubsub.get_message(timeout=_left(deadline, backend.recheck_interval))
            if message is not None and message["type"] == "subscribe":
                break
            if deadline is not None and time.monotonic() >= deadline:
                return await _get(backend, client, task_id)
        while True:
            record = await _get(backend, client, task_id)
            if (record is not None and record.ready) or (
                deadline is not None and time.monotonic() >= deadline
            ):
                return record
            message = await pubsub.get_message(timeout=_left(deadline, backend.recheck_interval))
            if message is not None and message["type"] == "message":
                record = backend._decode(task_id, message["data"])
                if record.ready:
                    return record
    except redis.RedisError:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return await aio.poll(app, backend, task_id, left)  # type: ignore[no-any-return]
    finally:
        await pubsub.aclose()
