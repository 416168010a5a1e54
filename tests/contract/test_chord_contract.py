"""The chord counter contract, for every backend that offers one: exactly-once firing, in order,
idempotent under duplicate deliveries, and race-free across threads."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from cloudq.results.base import ChordStore

CHORD_BACKENDS = {"memory": "memory_result_backend", "redis": "redis_result_backend"}
BODY: dict[str, Any] = {"task": "tsum", "args": [], "kwargs": {}}


@pytest.fixture(params=sorted(CHORD_BACKENDS))
def store(request: pytest.FixtureRequest) -> ChordStore:
    backend = request.getfixturevalue(CHORD_BACKENDS[request.param]).backend
    assert isinstance(backend, ChordStore)
    return backend


def test_fires_once_with_results_in_order(store: ChordStore) -> None:
    cid = uuid.uuid4().hex
    store.chord_start(cid, 3, BODY, 60)
    assert store.chord_part_done(cid, 2, "c") is None
    assert store.chord_part_done(cid, 0, {"a": [1]}) is None
    assert store.chord_part_done(cid, 0, {"a": [1]}) is None  # duplicate: not a third part
    fired = store.chord_part_done(cid, 1, None)
    assert fired == (BODY, [{"a": [1]}, None, "c"])
    assert store.chord_part_done(cid, 1, None) is None  # a duplicate never fires it again
    assert store.chord_fail(cid) is None  # nor does a late failure


def test_failure_reports_once_and_blocks_the_body(store: ChordStore) -> None:
    cid = uuid.uuid4().hex
    store.chord_start(cid, 2, BODY, 60)
    assert store.chord_fail(cid) == BODY
    assert store.chord_fail(cid) is None
    store.chord_part_done(cid, 0, 1)
    assert store.chord_part_done(cid, 1, 2) is None


def test_unknown_chord_is_ignored(store: ChordStore) -> None:
    assert store.chord_part_done(uuid.uuid4().hex, 0, 1) is None
    assert store.chord_fail(uuid.uuid4().hex) is None


def test_concurrent_parts_fire_exactly_once(store: ChordStore) -> None:
    cid = uuid.uuid4().hex
    size = 60
    store.chord_start(cid, size, BODY, 60)
    fired: list[object] = []
    barrier = threading.Barrier(6)

    def worker(indexes: range) -> None:
        barrier.wait()
        for i in indexes:
            for _ in range(2):  # every part delivered twice
                got = store.chord_part_done(cid, i, i)
                if got is not None:
                    fired.append(got)

    threads = [threading.Thread(target=worker, args=(range(k, size, 6),)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert fired == [(BODY, list(range(size)))]
