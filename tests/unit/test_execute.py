"""execute → outcome → settle on the memory broker with a fake clock: exact times, no waiting."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest

from cloudq import App, State
from cloudq.adapters.base import Delivery
from cloudq.envelope import HEADER_ERROR_TRACEBACK, HEADER_ERROR_TYPE, decode
from cloudq.errors import MaxRetriesExceededError
from cloudq.execute import execute
from cloudq.outcome import Ack, DeadLetter, Defer, RetryAt
from cloudq.testing import FakeClock, process_one


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> App:
    name = uuid.uuid4().hex
    return App("t", broker=f"memory://{name}", backend=f"memory://{name}", clock=clock)


def dlq_bodies(app: App, queue: str = "default") -> list[dict[str, object]]:
    got = app.broker.receive(f"{queue}-dlq", 10, 0, 30)
    return [{"attrs": d.attributes, "env": json.loads(d.body)} for d in got]


def test_retry_backoff_is_exact_to_the_second(app: App, clock: FakeClock) -> None:
    calls: list[float] = []
    start = clock.monotonic()

    @app.task(autoretry_for=(ConnectionError,), retry_backoff=1, max_retries=3)
    def flaky() -> None:
        calls.append(clock.monotonic() - start)
        raise ConnectionError("down")

    flaky.delay()
    assert isinstance(process_one(app), RetryAt)
    for expected_delay in (1, 2, 4):
        clock.advance(expected_delay - 0.001)
        assert process_one(app) is None, "ran before its backoff ended"
        clock.advance(0.001)
        assert process_one(app) is not None
    assert calls == [0, 1, 3, 7]
    assert app.broker.stats("default").dead_lettered == 1


def test_max_retries_dead_letters_with_traceback(app: App, clock: FakeClock) -> None:
    @app.task(autoretry_for=(ValueError,), max_retries=1, retry_backoff=2)
    def bad(x: int) -> None:
        raise ValueError(f"bad {x}")

    result = bad.delay(7)
    process_one(app)
    assert result.state == State.RETRY
    clock.advance(2)
    outcome = process_one(app)
    assert isinstance(outcome, DeadLetter)
    assert "max retries (1) exceeded" in outcome.reason
    [dead] = dlq_bodies(app)
    headers = dead["env"]["headers"]  # type: ignore[index]
    assert headers[HEADER_ERROR_TYPE] == "builtins.ValueError"
    assert "raise ValueError" in headers[HEADER_ERROR_TRACEBACK]
    assert dead["env"]["attempt"] == 2  # type: ignore[index]
    assert "max retries" in dead["attrs"]["cloudq-dead-letter-reason"]  # type: ignore[index]
    with pytest.raises(ValueError, match="bad 7") as info:
        result.get(timeout=1)
    assert "raise ValueError" in str(info.value.__cause__)


def test_eta_is_never_early(app: App, clock: FakeClock) -> None:
    ran: list[object] = []

    @app.task
    def later() -> None:
        ran.append(clock.now())

    eta = clock.now() + timedelta(seconds=90)
    later.apply_async(eta=eta)
    clock.advance(89.999)
    assert process_one(app) is None
    clock.advance(0.001)
    process_one(app)
    assert ran == [eta]


def test_long_countdown_hops_when_native_delay_is_capped(clock: FakeClock) -> None:
    name = uuid.uuid4().hex
    app = App("t", broker=f"memory://{name}?max_delay_seconds=900", clock=clock)
    ran: list[object] = []

    @app.task
    def in_two_hours() -> None:
        ran.append(clock.now())

    due = clock.now() + timedelta(hours=2)
    in_two_hours.apply_async(countdown=7200)
    hops = 0
    while not ran:
        clock.advance(900)
        outcome = process_one(app)
        if isinstance(outcome, Defer):
            hops += 1
            assert outcome.until == due
    assert ran == [due]
    assert hops == 7  # 8 windows of 900 s: 7 re-sends, the 8th runs it


def test_unknown_task_is_dead_lettered(app: App) -> None:
    other = App("other", broker=app.conf.broker_url, clock=app.clock)

    @other.task(name="not.here")
    def ghost() -> None: ...

    ghost.delay()
    outcome = process_one(app)
    assert isinstance(outcome, DeadLetter)
    assert "unknown task 'not.here'" in outcome.reason


def test_tampered_and_unsigned_envelopes_are_dead_lettered_unrun(clock: FakeClock) -> None:
    name = uuid.uuid4().hex
    signed = App("t", broker=f"memory://{name}", clock=clock, signing_keys=["k2", "k1"])
    ran: list[int] = []

    @signed.task(name="pay")
    def pay(amount: int) -> None:
        ran.append(amount)

    pay.delay(10)
    [d] = signed.broker.receive("default", 1, 0, 30)
    tampered = d.body.replace(b"[10]", b"[99999]")
    assert tampered != d.body
    outcome = execute(Delivery("default", tampered, "m1", 1), signed)
    assert isinstance(outcome, DeadLetter) and "signature does not match" in outcome.reason

    unsigned_app = App("u", broker=f"memory://{name}", clock=clock)
    unsigned_app.task(name="pay")(lambda amount: None)
    unsigned_app.tasks["pay"].delay(5)
    [u] = signed.broker.receive("default", 1, 0, 30)
    outcome = execute(u, signed)
    assert isinstance(outcome, DeadLetter) and "unsigned" in outcome.reason

    # A key that has been rotated out of first place still verifies.
    old = App("o", broker=f"memory://{name}", clock=clock, signing_keys=["k1"])
    old.task(name="pay")(lambda amount: None)
    old.tasks["pay"].delay(3)
    [o] = signed.broker.receive("default", 1, 0, 30)
    assert isinstance(execute(o, signed), Ack)
    assert ran == [3]


def test_expired_task_is_discarded_as_revoked(app: App, clock: FakeClock) -> None:
    @app.task
    def stale() -> None:
        raise AssertionError("must not run")

    result = stale.apply_async(expires=10)
    clock.advance(11)
    assert isinstance(process_one(app), Ack)
    assert result.state == State.REVOKED


def test_bound_task_sees_its_request_and_retries_itself(app: App, clock: FakeClock) -> None:
    seen: list[tuple[int, str | None]] = []

    @app.task(bind=True, max_retries=2)
    def bound(self, x: int) -> int:  # type: ignore[no-untyped-def]
        seen.append((self.request.attempt, self.request.queue))
        if self.request.retries < 2:
            raise self.retry(countdown=5)
        return x * 2

    result = bound.delay(21)
    process_one(app)
    clock.advance(5)
    process_one(app)
    clock.advance(5)
    process_one(app)
    assert seen == [(1, "default"), (2, "default"), (3, "default")]
    assert result.get(timeout=1) == 42


def test_request_describes_the_running_message_and_a_direct_call(app: App) -> None:
    seen: list[dict[str, object]] = []

    @app.task(bind=True)
    def look(self, x: int) -> None:  # type: ignore[no-untyped-def]
        r = self.request
        seen.append(
            {
                "id": r.id,
                "task": r.task,
                "root": r.root_id,
                "parent": r.parent_id,
                "args": r.args,
                "headers": r.headers,
                "count": r.delivery_count,
                "direct": r.called_directly,
            }
        )

    sent = look.apply_async((3,), headers={"tenant": "acme"})
    process_one(app)
    look(4)
    assert seen == [
        {
            "id": sent.id,
            "task": look.name,
            "root": sent.id,
            "parent": None,
            "args": [3],
            "headers": {"tenant": "acme"},
            "count": 1,
            "direct": False,
        },
        {
            "id": None,
            "task": look.name,
            "root": None,
            "parent": None,
            "args": [],
            "headers": {},
            "count": 1,
            "direct": True,
        },
    ]


def test_retry_beyond_max_raises_max_retries_exceeded(app: App) -> None:
    @app.task(bind=True, max_retries=0)
    def once(self) -> None:  # type: ignore[no-untyped-def]
        self.retry()

    result = once.delay()
    outcome = process_one(app)
    assert isinstance(outcome, DeadLetter)
    with pytest.raises(MaxRetriesExceededError, match="last allowed"):  # rebuilt, as Celery
        result.get(timeout=1)


def test_failure_without_autoretry_goes_straight_to_dlq(app: App) -> None:
    @app.task(max_retries=5)
    def boom() -> None:
        raise KeyError("nope")

    boom.delay()
    outcome = process_one(app)
    assert isinstance(outcome, DeadLetter)
    [dead] = dlq_bodies(app)
    env = decode(json.dumps(dead["env"]).encode())
    assert env.headers[HEADER_ERROR_TYPE] == "builtins.KeyError"


def test_typed_arguments_and_results_round_trip(app: App) -> None:
    @app.task
    def shift(when: datetime, days: int) -> datetime:
        assert isinstance(when, datetime)
        return when + timedelta(days=days)

    start = datetime(2031, 5, 1, 12, 0, tzinfo=app.clock.now().tzinfo)
    result = shift.delay(start, 2)
    process_one(app)
    assert result.get(timeout=1) == start + timedelta(days=2)


def test_result_that_is_not_json_is_reported(app: App) -> None:
    @app.task
    def returns_object() -> object:
        return object()

    result = returns_object.delay()
    assert isinstance(process_one(app), Ack)
    assert result.state == State.FAILURE
    with pytest.raises(Exception, match="not JSON"):
        result.get(timeout=1)


def test_ignore_result_and_no_backend_store_nothing(clock: FakeClock) -> None:
    name = uuid.uuid4().hex
    app = App("t", broker=f"memory://{name}", backend=f"memory://{name}", clock=clock)

    @app.task(ignore_result=True)
    def quiet() -> int:
        return 1

    result = quiet.delay()
    process_one(app)
    assert result.state == State.PENDING
    assert app.broker.stats("default").visible == 0


def test_async_task_runs(app: App) -> None:
    import asyncio

    @app.task
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    result = add.delay(2, 3)
    process_one(app)
    assert result.get(timeout=1) == 5


def test_broker_without_native_delay_holds_then_resends_fresh(clock: FakeClock) -> None:
    """Pub/Sub has no native delay: a due-later task is held (release with a delay) once, then
    re-sent fresh, so waiting never piles up delivery attempts."""
    name = uuid.uuid4().hex
    app = App("t", broker=f"memory://{name}?max_delay_seconds=0&max_lease_seconds=600", clock=clock)
    ran: list[object] = []

    @app.task
    def in_an_hour() -> None:
        ran.append(clock.now())

    due = clock.now() + timedelta(hours=1)
    in_an_hour.apply_async(countdown=3600)
    counts: list[int] = []
    while not ran:
        [delivery] = app.broker.receive("default", 1, 0, 30) or [None]  # type: ignore[list-item]
        if delivery is None:
            clock.advance(60)
            continue
        counts.append(delivery.receive_count)
        outcome = execute(delivery, app)
        from cloudq.settle import settle

        settle(app, delivery, outcome)
    assert ran == [due]
    assert max(counts) <= 2, f"delivery attempts piled up: {counts}"
    assert app.broker.stats("default").dead_lettered == 0
