"""What workers, handlers and beats share through the result backend, for every backend that
offers it: chord counters (exactly-once firing, in order, idempotent under duplicates, race-free),
rate-limit slots, beat claims and markers, revoked task ids."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from cloudq.stores.beat import BeatStore
from cloudq.stores.chords import ChordStore
from cloudq.stores.rate_slots import RateLimiter
from cloudq.stores.revoked import RevokeStore

SHARED_BACKENDS = {
    "memory": "memory_result_backend",
    "redis": "redis_result_backend",
    "dynamodb": "dynamodb_result_backend",
    "azuretable": "azuretable_result_backend",
    "firestore": "firestore_result_backend",
}
BODY: dict[str, Any] = {"task": "tsum", "args": [], "kwargs": {}}


@pytest.fixture(params=sorted(SHARED_BACKENDS))
def store(request: pytest.FixtureRequest) -> Any:
    backend = request.getfixturevalue(SHARED_BACKENDS[request.param]).backend
    assert isinstance(backend, ChordStore | RateLimiter | BeatStore)
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


def test_a_second_start_keeps_the_chord(store: ChordStore) -> None:
    """A redelivered group hop starts its chord again: the parts already done stay counted and
    a body that fired never fires a second time."""
    cid = uuid.uuid4().hex
    store.chord_start(cid, 2, BODY, 60)
    assert store.chord_part_done(cid, 0, "a") is None
    store.chord_start(cid, 2, BODY, 60)
    assert store.chord_part_done(cid, 1, "b") == (BODY, ["a", "b"])
    store.chord_start(cid, 2, BODY, 60)
    assert store.chord_part_done(cid, 0, "a") is None
    assert store.chord_part_done(cid, 1, "b") is None
    assert store.chord_fail(cid) is None


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


def test_rate_slots_are_spaced_and_shared(store: Any) -> None:
    key = uuid.uuid4().hex
    waits = [store.reserve(key, 10.0) for _ in range(3)]
    assert waits[0] == pytest.approx(0, abs=0.5)
    assert waits[1] == pytest.approx(10, abs=0.5)
    assert waits[2] == pytest.approx(20, abs=0.5)


def test_concurrent_rate_slots_never_collide(store: Any) -> None:
    key = uuid.uuid4().hex
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(5):
            w = store.reserve(key, 100.0)
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    slots = sorted(round(w / 100) for w in waits)
    assert slots == list(range(20)), "two callers got the same slot"


def test_beat_claims_once_and_unclaims(store: Any) -> None:
    key = f"tick-{uuid.uuid4().hex}"
    assert store.claim(key, 60) is True
    assert store.claim(key, 60) is False
    store.unclaim(key)
    assert store.claim(key, 60) is True
    marker = f"m-{uuid.uuid4().hex}"
    assert store.get_marker(marker) is None
    store.set_marker(marker, "2030-01-01T00:00:00+00:00")
    assert store.get_marker(marker) == "2030-01-01T00:00:00+00:00"


def test_firestore_clients_racing_for_the_last_part_fire_once(
    firestore_result_backend: Any,
) -> None:
    """Two clients (as two processes: no lock shared in between) contend in Firestore itself."""
    from cloudq.clock import FakeClock
    from cloudq_pubsub.firestore import open_firestore_backend

    first = firestore_result_backend.backend
    second = open_firestore_backend(f"firestore://cloudq-test/{first.collection}", FakeClock())
    cid, tick = uuid.uuid4().hex, f"tick-{uuid.uuid4().hex}"
    first.chord_start(cid, 2, BODY, 60)
    first.chord_part_done(cid, 0, "a")
    fired: list[object] = []
    claimed: list[bool] = []
    barrier = threading.Barrier(2)

    def race(backend: Any) -> None:
        barrier.wait()
        fired.append(backend.chord_part_done(cid, 1, "b"))
        claimed.append(backend.claim(tick, 60))

    threads = [threading.Thread(target=race, args=(b,)) for b in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    second.close()
    assert sorted(fired, key=bool) == [None, (BODY, ["a", "b"])]
    assert sorted(claimed) == [False, True]


def _wait_gone(store: Any, task_id: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if task_id not in store.revoke_list():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(params=sorted(SHARED_BACKENDS))
def revoke_store(request: pytest.FixtureRequest) -> Any:
    under_test = request.getfixturevalue(SHARED_BACKENDS[request.param])
    assert isinstance(under_test.backend, RevokeStore)
    return under_test


def test_revoked_ids_are_listed_until_they_expire(revoke_store: Any) -> None:
    store, clock = revoke_store.backend, revoke_store.fake_clock
    short, long_, other = (uuid.uuid4().hex for _ in range(3))
    store.revoke_add([], 60)  # nothing to record: no error
    store.revoke_add([short], 0.5)
    store.revoke_add([long_, other], 600)
    store.revoke_add([other], 600)  # again: still one entry
    listed = store.revoke_list()
    assert {short, long_, other} <= set(listed)
    assert listed.count(other) == 1
    if clock is not None:
        clock.advance(1)
        assert short not in store.revoke_list()
    else:  # Redis times expiry by its own clock
        assert _wait_gone(store, short)
    assert {long_, other} <= set(store.revoke_list())


def test_revoking_again_moves_the_expiry_on(revoke_store: Any) -> None:
    store, clock = revoke_store.backend, revoke_store.fake_clock
    task_id = uuid.uuid4().hex
    store.revoke_add([task_id], 0.5)
    store.revoke_add([task_id], 600)
    if clock is not None:
        clock.advance(1)
    else:
        time.sleep(0.6)  # past the first expiry: the second must hold
    assert task_id in store.revoke_list()


def test_many_revoked_ids_at_once(revoke_store: Any) -> None:
    store = revoke_store.backend
    ids = [str(uuid.uuid4()) for _ in range(250)]  # past one Azure transaction, one DynamoDB update
    store.revoke_add(ids, 600)
    assert set(ids) <= set(store.revoke_list())
