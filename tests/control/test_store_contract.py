"""The control-store contract (heartbeats, inboxes) on every store that has one, and the event
stream on those that keep one: memory, Redis (real server), DynamoDB (moto server), Firestore
(emulator)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cloudq.clock import FakeClock, SystemClock
from cloudq.results.memory import open_memory_backend
from cloudq.stores.control import ControlStore
from cloudq.stores.events import EventStore
from cloudq.testing import wait_for


def open_store(request: pytest.FixtureRequest, kind: str) -> Iterator[tuple[Any, FakeClock | None]]:
    if kind == "memory":
        clock = FakeClock()
        yield open_memory_backend(f"memory://ctl-{uuid.uuid4().hex}", clock), clock
    elif kind == "redis":
        from cloudq.results.redis import open_redis_backend

        url = request.getfixturevalue("redis_url")
        backend = open_redis_backend(f"{url}?prefix=ctl-{uuid.uuid4().hex[:8]}", SystemClock())
        yield backend, None
        backend.close()
    elif kind == "azuretable":
        request.getfixturevalue("azure_storage_env")
        from cloudq_servicebus.table import open_table_backend

        clock = FakeClock()
        table = open_table_backend(f"azuretable://cloudqctl{uuid.uuid4().hex[:12]}?create=1", clock)
        yield table, clock
        table.close()
    elif kind == "firestore":
        request.getfixturevalue("firestore_env")
        from cloudq_pubsub.firestore import open_firestore_backend

        clock = FakeClock()
        firestore = open_firestore_backend(f"firestore://cloudq-test/ctl-{uuid.uuid4().hex}", clock)
        yield firestore, clock
        firestore.close()
    else:
        request.getfixturevalue("sqs_env")
        from cloudq_sqs.dynamodb import open_dynamodb_backend

        clock = FakeClock()
        table = f"cloudq-ctl-{uuid.uuid4().hex[:8]}"
        dynamodb = open_dynamodb_backend(f"dynamodb://{table}?create=1", clock)
        yield dynamodb, clock
        dynamodb.close()


@pytest.fixture(params=["memory", "redis", "dynamodb", "azuretable", "firestore"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[Any, FakeClock | None]]:
    """(backend, the fake clock it expires records by, or None for real time)."""
    yield from open_store(request, request.param)


@pytest.fixture(params=["memory", "redis"])
def stream(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """Stores that keep an event stream (DynamoDB has nothing cheap to tail: none)."""
    for backend, _ in open_store(request, request.param):
        assert isinstance(backend, EventStore)
        yield backend


def expire(clock: FakeClock | None, backend: ControlStore, worker: str, ttl: float) -> None:
    if clock is not None:
        clock.advance(ttl + 0.01)
    wait_for(lambda: worker not in backend.control_workers(), timeout=5, message="expiry")


def test_heartbeat_lists_the_worker_until_its_record_expires(store: Any) -> None:
    backend, clock = store
    assert isinstance(backend, ControlStore)
    assert backend.control_workers() == {}
    ttl = 0.5
    assert backend.control_heartbeat("w1@a", json.dumps({"n": 1}), ttl) == []
    assert backend.control_heartbeat("w2@b", json.dumps({"n": 2}), 60) == []
    assert backend.control_heartbeat("w1@a", json.dumps({"n": 3}), ttl) == []
    workers = backend.control_workers()
    assert {k: json.loads(v) for k, v in workers.items()} == {"w1@a": {"n": 3}, "w2@b": {"n": 2}}
    expire(clock, backend, "w1@a", ttl)
    assert list(backend.control_workers()) == ["w2@b"], "the other worker's record is kept"
    backend.control_forget("w2@b")
    assert backend.control_workers() == {}


def test_commands_are_taken_once_in_order_by_the_next_heartbeat(store: Any) -> None:
    backend, _ = store
    backend.control_heartbeat("w1@a", "{}", 60)
    backend.control_heartbeat("w2@b", "{}", 60)
    backend.control_send("w1@a", "first", 60)
    backend.control_send("w1@a", "second", 60)
    backend.control_send("w2@b", "other", 60)
    assert backend.control_heartbeat("w1@a", "{}", 60) == ["first", "second"]
    assert backend.control_heartbeat("w1@a", "{}", 60) == [], "taken, not read twice"
    assert backend.control_heartbeat("w2@b", "{}", 60) == ["other"]
    backend.control_send("w1@a", "after forget", 60)
    backend.control_forget("w1@a")
    assert backend.control_heartbeat("w1@a", "{}", 60) == [], "forget drops the inbox too"


def test_event_stream_reads_from_now_on_and_continues_by_cursor(stream: EventStore) -> None:
    backend = stream
    backend.events_append(["old"], 100)
    began = time.monotonic()
    cursor, got = backend.events_read(None, 0.2, 10)
    assert got == [], "from now on: older events are not replayed"
    assert time.monotonic() - began >= 0.15, "waited for the timeout"
    backend.events_append(["a", "b", "c"], 100)
    cursor, got = backend.events_read(cursor, 1, 2)
    assert got == ["a", "b"]
    cursor, got = backend.events_read(cursor, 1, 10)
    assert got == ["c"]
    cursor, got = backend.events_read(cursor, 0.05, 10)
    assert got == []


def test_event_stream_is_capped(stream: EventStore) -> None:
    backend = stream
    backend.events_append([f"e{i}" for i in range(500)], 100)
    _, got = backend.events_read("0-0" if "Redis" in type(backend).__name__ else "0", 1, 1000)
    assert 100 <= len(got) < 500, "trimmed to about maxlen (Redis trims approximately)"
    assert got[-1] == "e499"


def test_dynamodb_is_a_control_store_without_an_event_stream(sqs_env: str) -> None:
    from cloudq_sqs.dynamodb import open_dynamodb_backend

    backend = open_dynamodb_backend("dynamodb://cloudq-ctl-types", FakeClock())
    assert isinstance(backend, ControlStore)
    assert not isinstance(backend, EventStore)
