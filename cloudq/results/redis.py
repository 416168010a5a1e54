"""``redis://`` and ``rediss://`` results: one JSON string per task, expiry by Redis itself.

Layout: the key ``<prefix>:<task_id>`` holds ``TaskResult.model_dump_json()``, set with ``PX`` so
Redis drops it when its time to live ends (milliseconds, since ``expires_seconds`` may be
fractional). A store of a ready state also publishes the record on the channel of the same name,
so ``wait`` sleeps on a socket instead of polling. The prefix comes from the URL query
(``redis://host:6379/0?prefix=myapp``, default ``cloudq-result``); every other query parameter is
redis-py's own.

``redis`` is imported only when a client is made: ``import cloudq`` must stay free of it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import ValidationError

from cloudq.adapters.urls import redact_url
from cloudq.clock import Clock
from cloudq.distribution import install_hint
from cloudq.errors import BrokerError, CloudqError, ConfigurationError
from cloudq.results.base import TaskResult, poll_until_ready

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import PubSub

__all__ = [
    "DEFAULT_PREFIX",
    "RedisBackend",
    "open_redis_backend",
    "redis_client",
    "split_url",
]

DEFAULT_PREFIX = "cloudq-result"
SCHEMES = frozenset({"redis", "rediss", "unix"})
# Query parameters cloudq reads itself; redis-py would reject them as unknown connection options.
CLOUDQ_PARAMS = frozenset({"prefix"})
# Without a connect timeout an unreachable host hangs for the OS default (minutes); without a
# read timeout a stalled server hangs a worker forever. Both can be overridden in the URL query.
DEFAULT_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 5.0, "socket_timeout": 30.0}
_EVENTS_TTL_SECONDS = 86_400
"""The event stream disappears a day after the last event (events were switched off)."""


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Separate cloudq's own query parameters from the URL handed to redis-py."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(
            f"not a Redis URL: {redact_url(url)!r} (expected redis://, rediss:// or unix://)"
        )
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in CLOUDQ_PARAMS:
            ours[key] = value
        else:
            theirs.append((key, value))
    query = urlencode(theirs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)), ours


def redis_client(url: str, **options: Any) -> Redis:
    """A redis-py client for a cloudq Redis URL, shared by results, rate limits and control plane.

    cloudq's own query parameters (``prefix``) are stripped; ``options`` are redis-py keyword
    arguments and the URL query overrides them. No connection is made until the first command,
    so building an ``App`` never fails on a Redis outage.
    """
    redis_url, _ = split_url(url)
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            f"the Redis client is not installed, needed for {redact_url(url)!r}: "
            f"{install_hint('redis')}"
        ) from exc
    try:
        return redis.Redis.from_url(redis_url, **{**DEFAULT_OPTIONS, **options})
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"bad Redis URL {redact_url(url)!r}: {exc}") from exc


# Record a header result (idempotent: HSET by index); the call that completes the header and
# wins HSETNX "fired" gets the body and all results. Results share the chord's expiry.
_CHORD_START = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('HSET', KEYS[1], 'size', ARGV[1], 'body', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return true
"""
_CHORD_PART = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
local size = tonumber(redis.call('HGET', KEYS[1], 'size'))
if redis.call('HLEN', KEYS[2]) >= size and redis.call('HSETNX', KEYS[1], 'fired', '1') == 1 then
  return {redis.call('HGET', KEYS[1], 'body'), redis.call('HGETALL', KEYS[2])}
end
return false
"""
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local nxt = slot + interval
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
return string.format('%.6f', slot - now)
"""
# Control plane: a worker's record (a key with PX) and its entry in the index of live workers (a
# sorted set scored by expiry, timed by the server's clock); the inbox is read and cleared at once.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]) / 1000, ARGV[3])
local cmds = redis.call('LRANGE', KEYS[3], 0, -1)
if #cmds > 0 then redis.call('DEL', KEYS[3]) end
return cmds
"""
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
# Revoked ids: one sorted set scored by each id's expiry on the server's clock; expired ones are
# dropped on every write and read, and the set itself outlives its newest entry by nothing.
_REVOKE_ADD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last > 0 then redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(last[2]) * 1000)) end
"""
_REVOKED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""
_CHORD_FAIL = """
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HSETNX', KEYS[1], 'fired', '1') == 1 then
  return redis.call('HGET', KEYS[1], 'body')
end
return false
"""


class RedisBackend:
    """Results in Redis; thread-safe (redis-py pools its connections)."""

    recheck_interval = 1.0
    """Longest sleep of ``wait`` on the channel before it re-reads the key: pub/sub is
    fire-and-forget, so a message sent while the subscriber reconnects would otherwise be lost."""

    def __init__(self, url: str, clock: Clock, client: Redis | None = None) -> None:
        _, ours = split_url(url)
        prefix = ours.get("prefix", DEFAULT_PREFIX)
        if not prefix:
            raise ConfigurationError(f"empty 'prefix' in Redis URL {redact_url(url)!r}")
        self.prefix = prefix
        self.url = redact_url(url)
        # Redis keeps time for expiry; the clock is taken for the factory signature only.
        self._clock = clock
        self._client = client if client is not None else redis_client(url)

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r})"

    def key(self, task_id: str) -> str:
        """The key (and notification channel) of ``task_id``'s record."""
        return f"{self.prefix}:{task_id}"

    @contextmanager
    def _errors(self, operation: str, task_id: str) -> Iterator[None]:
        """Turn redis-py's errors into ``BrokerError`` naming the server and the operation."""
        import redis

        try:
            yield
        except redis.RedisError as exc:
            raise BrokerError(
                f"Redis result backend {self.url}: {operation} of {task_id!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _decode(self, task_id: str, raw: bytes | str) -> TaskResult:
        try:
            return TaskResult.model_validate_json(raw)
        except ValidationError as exc:
            raise CloudqError(
                f"Redis result backend {self.url}: key {self.key(task_id)!r} does not hold a "
                f"cloudq result record: {exc}"
            ) from exc

    def store(self, result: TaskResult, expires_seconds: float | None) -> None:
        """SET (and PUBLISH if ready) in one round trip; SET comes first so a waiter that
        subscribed before re-reading the key sees either the key or the message."""
        key = self.key(result.task_id)
        with self._errors("store", result.task_id):
            if expires_seconds is not None and expires_seconds <= 0:
                # Already expired: Redis rejects PX 0, and no waiter may see it.
                self._client.delete(key)
                return
            payload = result.model_dump_json()
            # Round first: float noise (0.7 * 1000 = 700.0000000000001) must not add a millisecond.
            ttl_ms = None if expires_seconds is None else math.ceil(round(expires_seconds * 1e3, 6))
            pipe = self._client.pipeline(transaction=False)
            pipe.set(key, payload, px=ttl_ms)
            if result.ready:
                pipe.publish(key, payload)
            pipe.execute()

    def get(self, task_id: str) -> TaskResult | None:
        with self._errors("get", task_id):
            raw = self._client.get(self.key(task_id))
        return None if raw is None else self._decode(task_id, raw)

    def wait(self, task_id: str, timeout: float | None) -> TaskResult | None:
        """Subscribe, then re-read the key, then sleep on the channel until ready or timeout.

        Falls back to polling when pub/sub is unavailable (an ACL without it, a proxy that
        drops it).
        """
        if timeout is not None and timeout <= 0:
            return self.get(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        import redis

        pubsub: PubSub | None = None
        try:
            # redis-py leaves ``pubsub()`` unannotated; the cast keeps mypy --strict quiet.
            make_pubsub = cast("Callable[..., PubSub]", self._client.pubsub)
            pubsub = make_pubsub(ignore_subscribe_messages=False)
            return self._wait_subscribed(pubsub, task_id, deadline)
        except redis.RedisError:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            return poll_until_ready(self, task_id, remaining)
        finally:
            if pubsub is not None:
                pubsub.close()

    def _wait_subscribed(
        self, pubsub: PubSub, task_id: str, deadline: float | None
    ) -> TaskResult | None:
        pubsub.subscribe(self.key(task_id))
        # SUBSCRIBE must be in force on the server before the key is re-read, or a store landing
        # in between would be missed by both; its confirmation says it is.
        while True:
            message = pubsub.get_message(timeout=self._pause(deadline))
            if message is not None and message["type"] == "subscribe":
                break
            if self._passed(deadline):
                return self.get(task_id)
        while True:
            record = self.get(task_id)
            if (record is not None and record.ready) or self._passed(deadline):
                return record
            message = pubsub.get_message(timeout=self._pause(deadline))
            if message is not None and message["type"] == "message":
                record = self._decode(task_id, message["data"])
                if record.ready:
                    return record

    @staticmethod
    def _passed(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def _pause(self, deadline: float | None) -> float:
        if deadline is None:
            return self.recheck_interval
        return min(self.recheck_interval, max(0.0, deadline - time.monotonic()))

    def forget(self, task_id: str) -> None:
        with self._errors("forget", task_id):
            self._client.delete(self.key(task_id))

    # --- beat: claims (SET NX) and last-tick markers ---------------------------------------
    def claim(self, key: str, ttl_seconds: float) -> bool:
        with self._errors("beat claim", key):
            return bool(
                self._client.set(f"{self.prefix}:{key}", "1", nx=True, ex=math.ceil(ttl_seconds))
            )

    def unclaim(self, key: str) -> None:
        with self._errors("beat unclaim", key):
            self._client.delete(f"{self.prefix}:{key}")

    def get_marker(self, key: str) -> str | None:
        with self._errors("beat marker", key):
            raw = self._client.get(f"{self.prefix}:{key}")
        return None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))

    def set_marker(self, key: str, value: str) -> None:
        with self._errors("beat marker", key):
            self._client.set(f"{self.prefix}:{key}", value)

    # --- rate limits: GCRA slots, timed by the Redis server's clock (no client skew) --------
    def reserve(self, key: str, interval: float) -> float:
        with self._errors("rate limit", key):
            wait = self._client.eval(_RESERVE, 1, f"{self.prefix}:rate:{key}", repr(interval))
        return float(wait)

    # --- chords: one Lua script call per header task, atomic on the server ------------------
    def _chord_keys(self, chord_id: str) -> list[str]:
        return [f"{self.prefix}:chord:{chord_id}", f"{self.prefix}:chord:{chord_id}:results"]

    def chord_start(
        self, chord_id: str, size: int, body: dict[str, Any], expires_seconds: float | None
    ) -> None:
        meta, _ = self._chord_keys(chord_id)
        ttl = "0" if expires_seconds is None else str(math.ceil(expires_seconds))
        with self._errors("chord start", chord_id):
            self._client.eval(_CHORD_START, 1, meta, str(size), json.dumps(body), ttl)

    def chord_part_done(
        self, chord_id: str, index: int, result: Any
    ) -> tuple[dict[str, Any], list[Any]] | None:
        meta, results = self._chord_keys(chord_id)
        with self._errors("chord part", chord_id):
            reply = self._client.eval(_CHORD_PART, 2, meta, results, str(index), json.dumps(result))
        if not reply:
            return None
        body, flat = reply
        by_index = {int(flat[i]): json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}
        return json.loads(body), [by_index[i] for i in sorted(by_index)]

    def chord_fail(self, chord_id: str) -> dict[str, Any] | None:
        meta, _ = self._chord_keys(chord_id)
        with self._errors("chord fail", chord_id):
            body = self._client.eval(_CHORD_FAIL, 1, meta)
        return None if not body else dict(json.loads(body))

    # --- control plane: heartbeats, inboxes, the event stream -------------------------------
    def _ctl(self, *parts: str) -> str:
        return ":".join((self.prefix, "ctl", *parts))

    def control_heartbeat(self, worker_id: str, record: str, ttl_seconds: float) -> list[str]:
        keys = [self._ctl("worker", worker_id), self._ctl("workers"), self._ctl("inbox", worker_id)]
        ttl_ms = max(1, math.ceil(ttl_seconds * 1000))
        with self._errors("heartbeat", worker_id):
            raw = self._client.eval(_HEARTBEAT, 3, *keys, record, str(ttl_ms), worker_id)
        return [_text(c) for c in raw or []]

    def control_workers(self) -> dict[str, str]:
        with self._errors("worker list", "*"):
            ids = [_text(i) for i in self._client.eval(_LIVE, 1, self._ctl("workers")) or []]
            records = self._client.mget([self._ctl("worker", i) for i in ids]) if ids else []
        found: dict[str, str] = {}
        for worker_id, record in zip(ids, records, strict=True):
            if record is not None:
                found[worker_id] = _text(record)
        return found

    def control_forget(self, worker_id: str) -> None:
        with self._errors("forget worker", worker_id):
            pipe = self._client.pipeline(transaction=True)
            pipe.zrem(self._ctl("workers"), worker_id)
            pipe.delete(self._ctl("worker", worker_id), self._ctl("inbox", worker_id))
            pipe.execute()

    def control_send(self, worker_id: str, command: str, ttl_seconds: float) -> None:
        key = self._ctl("inbox", worker_id)
        with self._errors("control command", worker_id):
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(key, command)
            pipe.pexpire(key, max(1, math.ceil(ttl_seconds * 1000)))
            pipe.execute()

    def revoke_add(self, task_ids: Sequence[str], ttl_seconds: float) -> None:
        if not task_ids:
            return
        with self._errors("revoke", task_ids[0]):
            self._client.eval(_REVOKE_ADD, 1, self._ctl("revoked"), repr(ttl_seconds), *task_ids)

    def revoke_list(self) -> list[str]:
        with self._errors("revoked list", "*"):
            return [_text(i) for i in self._client.eval(_REVOKED, 1, self._ctl("revoked")) or []]

    def events_append(self, events: Sequence[str], maxlen: int) -> None:
        """XADD with ``MAXLEN ~``; the stream expires a day after the last append."""
        key = self._ctl("events")
        with self._errors("events append", key):
            pipe = self._client.pipeline(transaction=False)
            for event in events:
                pipe.xadd(key, {"e": event}, maxlen=maxlen, approximate=True)
            pipe.expire(key, _EVENTS_TTL_SECONDS)
            pipe.execute()

    def events_read(self, cursor: str | None, timeout: float, count: int) -> tuple[str, list[str]]:
        key = self._ctl("events")
        with self._errors("events read", key):
            if cursor is None:
                last: Any = self._client.xrevrange(key, count=1)
                cursor = _text(last[0][0]) if last else "0-0"
            block = max(1, math.ceil(timeout * 1000))
            # redis-py types XREAD's reply loosely; its shape is [[key, [(id, fields)...]]].
            reply: Any = self._client.xread({key: cursor}, count=count, block=block)
        events: list[str] = []
        for _, entries in reply or []:
            for entry_id, fields in entries:
                cursor = _text(entry_id)
                data = fields.get(b"e", fields.get("e"))
                if data is not None:
                    events.append(_text(data))
        return cursor, events

    def close(self) -> None:
        """Disconnect the pooled connections."""
        self._client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_redis_backend(url: str, clock: Clock) -> RedisBackend:
    """Factory for the ``cloudq.backends`` entry points ``redis`` and ``rediss``.

    :param url: ``redis://[:PASSWORD@]HOST[:PORT][/DB]`` (``rediss://`` for TLS), as redis-py
        reads it.
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    return RedisBackend(url, clock)
