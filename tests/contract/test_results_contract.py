"""The result-backend contract, written once and run against every backend.

The backends come from ``result_backend`` in ``tests/contract/conftest.py``; backends on real
time (Redis, the cloud stores) are checked by waiting on conditions with a deadline, never by
sleeping a guessed amount.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudq.clock import FakeClock
from cloudq.results.base import ErrorInfo, ResultBackend, State, TaskResult

LONG = 30.0
"""A timeout no passing test gets near: a waiter woken by a store returns long before it."""

ERROR = ErrorInfo(
    type="builtins.ValueError",
    message="bad value: «ünïcode» ✗",
    traceback='Traceback (most recent call last):\n  File "tasks.py", line 3\nValueError: x\n',
)
NESTED: dict[str, Any] = {
    "list": [1, -2, 2.5, None, True, False, "", [], {}],
    "dict": {"a": {"b": {"c": [None, {"d": "e"}]}}},
    "unicode": 'żółć — 漢字 🚀 \u0000 "quoted" \\ \n\t',
    "big": 2**70,
    "float": 0.1,
    "none": None,
}


def new_id() -> str:
    return f"task-{uuid.uuid4()}"


def make(
    task_id: str | None = None,
    state: State = State.SUCCESS,
    *,
    result: Any = None,
    error: ErrorInfo | None = None,
    attempt: int = 1,
) -> TaskResult:
    return TaskResult(
        task_id=task_id or new_id(),
        state=state,
        task="shop.send_receipt",
        result=result,
        error=error,
        attempt=attempt,
        date_done=datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    )


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """True as soon as ``condition`` holds, False if it still does not after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


# --- store / get -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(State))
def test_roundtrip_of_each_state(result_backend: ResultBackend, state: State) -> None:
    failed = state in (State.FAILURE, State.RETRY)
    record = make(state=state, result=None if failed else NESTED, error=ERROR if failed else None)
    result_backend.store(record, None)
    assert result_backend.get(record.task_id) == record


@pytest.mark.parametrize(
    "value", [NESTED, [NESTED, [], None], "just text ✓", 42, -1.5, True, None, ""]
)
def test_roundtrip_of_json_results(result_backend: ResultBackend, value: Any) -> None:
    record = make(result=value)
    result_backend.store(record, 60)
    got = result_backend.get(record.task_id)
    assert got is not None
    assert got.result == value
    assert got == record


# Infinity is left out: it is not JSON; pydantic writes it as null, so it cannot round-trip.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
def test_roundtrip_of_any_json(result_backend: ResultBackend, value: Any) -> None:
    record = make(result=value)
    result_backend.store(record, 60)
    got = result_backend.get(record.task_id)
    assert got is not None
    assert got.result == value


def test_get_of_unknown_id_is_none(result_backend: ResultBackend) -> None:
    assert result_backend.get(new_id()) is None


def test_store_overwrites(result_backend: ResultBackend) -> None:
    task_id = new_id()
    result_backend.store(make(task_id, State.RETRY, error=ERROR, attempt=1), None)
    got = result_backend.get(task_id)
    assert got is not None
    assert got.state == State.RETRY
    assert got.error == ERROR
    final = make(task_id, State.SUCCESS, result={"ok": True}, attempt=2)
    result_backend.store(final, None)
    assert result_backend.get(task_id) == final


def test_ids_are_independent(result_backend: ResultBackend) -> None:
    a, b = make(result="a"), make(result="b")
    result_backend.store(a, None)
    result_backend.store(b, None)
    result_backend.forget(a.task_id)
    assert result_backend.get(a.task_id) is None
    assert result_backend.get(b.task_id) == b


# --- expiry and forget -------------------------------------------------------------------------


def test_record_expires(
    result_backend: ResultBackend, result_backend_clock: FakeClock | None
) -> None:
    record = make()
    stored_at = time.monotonic()
    result_backend.store(record, 0.3)
    assert result_backend.get(record.task_id) == record
    if result_backend_clock is not None:
        result_backend_clock.advance(0.29)
        assert result_backend.get(record.task_id) == record, "expired early"
        result_backend_clock.advance(0.02)
    assert eventually(lambda: result_backend.get(record.task_id) is None), "never expired"
    if result_backend_clock is None:
        # Redis counts milliseconds; allow for its clock and ours not ticking in step.
        assert time.monotonic() - stored_at >= 0.29, "expired early"


def test_overwrite_replaces_time_to_live(
    result_backend: ResultBackend, result_backend_clock: FakeClock | None
) -> None:
    expiring, kept = make(), make()
    result_backend.store(expiring, 0.3)
    result_backend.store(kept, 0.3)
    result_backend.store(kept, None)
    if result_backend_clock is not None:
        result_backend_clock.advance(0.3)
    assert eventually(lambda: result_backend.get(expiring.task_id) is None), "never expired"
    assert result_backend.get(kept.task_id) == kept


def test_forget(result_backend: ResultBackend) -> None:
    record = make()
    result_backend.store(record, None)
    result_backend.forget(record.task_id)
    assert result_backend.get(record.task_id) is None
    result_backend.forget(record.task_id)  # forgetting twice (or an unknown id) is no error
    result_backend.forget(new_id())


# --- wait --------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [State.SUCCESS, State.FAILURE, State.REVOKED])
def test_wait_returns_at_once_when_ready(result_backend: ResultBackend, state: State) -> None:
    record = make(state=state, error=ERROR if state == State.FAILURE else None)
    result_backend.store(record, None)
    started = time.monotonic()
    assert result_backend.wait(record.task_id, LONG) == record
    assert time.monotonic() - started < 2.0


def test_wait_times_out_with_the_latest_record(result_backend: ResultBackend) -> None:
    running = make(state=State.STARTED)
    result_backend.store(running, None)
    started = time.monotonic()
    assert result_backend.wait(running.task_id, 0.5) == running
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3.0


def test_wait_times_out_with_none_for_unknown_id(result_backend: ResultBackend) -> None:
    started = time.monotonic()
    assert result_backend.wait(new_id(), 0.3) is None
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3.0


def test_wait_with_zero_timeout_only_looks(result_backend: ResultBackend) -> None:
    running = make(state=State.STARTED)
    result_backend.store(running, None)
    started = time.monotonic()
    assert result_backend.wait(running.task_id, 0) == running
    assert result_backend.wait(new_id(), 0) is None
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3], ids=["racing", "soon", "later"])
def test_wait_wakes_on_a_store_from_another_thread(
    result_backend: ResultBackend, delay: float
) -> None:
    task_id = new_id()
    waiting = threading.Event()

    def waiter() -> TaskResult | None:
        waiting.set()
        return result_backend.wait(task_id, LONG)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(waiter)
        assert waiting.wait(5)
        time.sleep(delay)  # stagger the store against the waiter's setup; not a correctness wait
        result_backend.store(make(task_id, State.STARTED), None)  # not ready: must not wake it
        done = make(task_id, State.SUCCESS, result=NESTED)
        stored_at = time.monotonic()
        result_backend.store(done, None)
        assert future.result(timeout=LONG) == done
        assert time.monotonic() - stored_at < 5.0, "the waiter was not woken by the store"


def test_wait_without_timeout_wakes_on_store(result_backend: ResultBackend) -> None:
    task_id = new_id()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(result_backend.wait, task_id, None)
        time.sleep(0.1)
        done = make(task_id, State.FAILURE, error=ERROR)
        result_backend.store(done, None)
        assert future.result(timeout=10) == done


def test_every_waiter_wakes(result_backend: ResultBackend) -> None:
    task_id = new_id()
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(result_backend.wait, task_id, LONG) for _ in range(6)]
        time.sleep(0.1)
        done = make(task_id, State.SUCCESS, result=[1, 2, 3])
        started = time.monotonic()
        result_backend.store(done, None)
        assert [f.result(timeout=LONG) for f in futures] == [done] * 6
        assert time.monotonic() - started < 5.0


# --- concurrency -------------------------------------------------------------------------------


def test_concurrent_stores_of_distinct_ids(result_backend: ResultBackend) -> None:
    records = [make(result={"n": n, "text": "ü" * (n % 7)}) for n in range(160)]

    def store_slice(start: int) -> None:
        for record in records[start::8]:
            result_backend.store(record, 60)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(store_slice, range(8)))
    assert [result_backend.get(r.task_id) for r in records] == records


def test_concurrent_stores_of_one_id_leave_one_whole_record(
    result_backend: ResultBackend,
) -> None:
    task_id = new_id()
    candidates = {
        (thread, n): make(task_id, State.RETRY, result={"thread": thread, "n": n}, attempt=n + 1)
        for thread in range(8)
        for n in range(20)
    }

    def store_all(thread: int) -> None:
        for n in range(20):
            result_backend.store(candidates[thread, n], None)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(store_all, range(8)))
    got = result_backend.get(task_id)
    assert got is not None
    assert got in candidates.values()
    assert got.result["n"] == 19  # each thread's last write is the last one anybody sees
