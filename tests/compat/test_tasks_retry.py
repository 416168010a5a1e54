"""Issue 24: retries as Celery's: ``retry_kwargs``, ``default_retry_delay``,
``self.retry(exc=, countdown=, eta=, max_retries=, throw=, args=, kwargs=)``, and the request."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cloudq import App
from cloudq.clock import FakeClock
from cloudq.errors import MaxRetriesExceededError, Retry
from cloudq.outcome import DeadLetter, RetryAt
from cloudq.testing import process_one


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> App:
    import uuid

    name = uuid.uuid4().hex
    return App("t", broker=f"memory://{name}", backend=f"memory://{name}", clock=clock)


def test_retry_kwargs_give_countdown_and_max_retries(app: App, clock: FakeClock) -> None:
    @app.task(autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 2, "countdown": 2})
    def fetch() -> None:
        raise ConnectionError("down")

    start = clock.now()
    fetch.delay()
    first = process_one(app)
    assert isinstance(first, RetryAt) and first.when - start == timedelta(seconds=2)
    clock.advance(2)
    assert isinstance(process_one(app), RetryAt)
    clock.advance(2)
    assert isinstance(process_one(app), DeadLetter)  # two retries, as retry_kwargs said


def test_default_retry_delay_is_the_plain_retry_wait(app: App, clock: FakeClock) -> None:
    @app.task(bind=True, default_retry_delay=30)
    def wait(self) -> None:  # type: ignore[no-untyped-def]
        raise self.retry()

    start = clock.now()
    wait.delay()
    outcome = process_one(app)
    assert isinstance(outcome, RetryAt) and outcome.when - start == timedelta(seconds=30)


def test_retry_with_eta_args_and_kwargs(app: App, clock: FakeClock) -> None:
    seen: list[tuple[Any, ...]] = []

    @app.task(bind=True)
    def page(self, n: int, size: int = 10) -> int:  # type: ignore[no-untyped-def]
        seen.append((self.request.retries, self.request.args, self.request.kwargs))
        if n < 3:
            raise self.retry(
                args=(n + 1,), kwargs={"size": size * 2}, eta=clock.now() + timedelta(seconds=5)
            )
        return n * size

    result = page.delay(1)
    assert isinstance(process_one(app), RetryAt)
    assert process_one(app) is None  # not due yet
    clock.advance(5)
    process_one(app)
    clock.advance(5)
    process_one(app)
    assert result.get(timeout=1) == 3 * 40
    assert seen == [(0, [1], {}), (1, [2], {"size": 20}), (2, [3], {"size": 40})]


def test_max_retries_exceeded_is_raised_in_the_task(app: App, clock: FakeClock) -> None:
    fell_back: list[int] = []

    @app.task(bind=True, max_retries=1, default_retry_delay=0)
    def careful(self) -> str:  # type: ignore[no-untyped-def]
        try:
            self.retry()
        except MaxRetriesExceededError:
            fell_back.append(self.request.retries)
            return "fallback"
        return "unreachable"

    result = careful.delay()
    assert isinstance(process_one(app), RetryAt)
    process_one(app)
    assert result.get(timeout=1) == "fallback" and fell_back == [1]


def test_retry_max_retries_argument_overrides_and_exc_is_raised(app: App) -> None:
    @app.task(bind=True, max_retries=10, default_retry_delay=0)
    def once(self) -> None:  # type: ignore[no-untyped-def]
        raise self.retry(exc=KeyError("gone"), max_retries=0)

    result = once.delay()
    assert isinstance(process_one(app), DeadLetter)
    with pytest.raises(KeyError):
        result.get(timeout=1)


def test_retry_throw_false_retries_when_the_body_returns(app: App) -> None:
    @app.task(bind=True, default_retry_delay=0, max_retries=1)
    def soft(self) -> str:  # type: ignore[no-untyped-def]
        if self.request.retries == 0:
            returned = self.retry(throw=False)
            assert isinstance(returned, Retry)
            return "first"
        return "second"

    result = soft.delay()
    assert isinstance(process_one(app), RetryAt)
    process_one(app)
    assert result.get(timeout=1) == "second"


def test_retry_called_directly_raises_the_error(app: App) -> None:
    @app.task(bind=True)
    def direct(self) -> None:  # type: ignore[no-untyped-def]
        raise self.retry(exc=ValueError("here"))

    with pytest.raises(ValueError, match="here"):
        direct()


def test_request_as_celery_fills_it(app: App) -> None:
    seen: dict[str, Any] = {}

    @app.task(bind=True)
    def look(self, x: int) -> None:  # type: ignore[no-untyped-def]
        r = self.request
        seen.update(
            id=r.id,
            retries=r.retries,
            args=r.args,
            kwargs=r.kwargs,
            hostname=r.hostname,
            delivery_info=r.delivery_info,
            called_directly=r.called_directly,
            is_eager=r.is_eager,
        )

    result = look.apply_async((1,), queue="default", priority=3)
    process_one(app)
    assert seen["id"] == result.id and seen["retries"] == 0
    assert (seen["args"], seen["kwargs"]) == ([1], {})
    assert "@" in seen["hostname"]
    assert seen["delivery_info"]["routing_key"] == "default"
    assert seen["delivery_info"]["priority"] == 3
    assert seen["called_directly"] is False and seen["is_eager"] is False
    look.apply(args=(2,))
    assert seen["is_eager"] is True
    look(3)
    assert seen["called_directly"] is True
