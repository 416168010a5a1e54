"""A store that lacks what a configured feature needs fails at startup (worker, serverless
handler, beat), naming the feature, the store and what to set, not at the first task."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import Delivery
from cloudq.beat import Beat
from cloudq.clock import Clock
from cloudq.errors import ConfigurationError
from cloudq.results.base import TaskResult
from cloudq.results.memory import MemoryBackend
from cloudq.serverless import BatchRecord, run_batch
from cloudq.worker import Worker


class ResultsOnly:
    """A backend that keeps results and nothing of the shared-store contract."""

    def __init__(self, url: str, clock: Clock) -> None:
        self._results = MemoryBackend(clock)

    def store(self, result: TaskResult, expires_seconds: float | None) -> None:
        self._results.store(result, expires_seconds)

    def get(self, task_id: str) -> TaskResult | None:
        return self._results.get(task_id)

    def wait(self, task_id: str, timeout: float | None) -> TaskResult | None:
        return self._results.wait(task_id, timeout)

    def forget(self, task_id: str) -> None:
        self._results.forget(task_id)

    def close(self) -> None: ...


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> str:
    """The URL of a results-only backend (``plain://``)."""
    monkeypatch.setattr("cloudq.results.load_plugin", lambda group, scheme: ResultsOnly)
    return "plain://results"


def make_app(backend: str | None, ran: list[str], **task_options: Any) -> App:
    app = App("req", broker=f"memory://{uuid.uuid4().hex}", backend=backend)

    @app.task(name="shop.pay", **task_options)
    def pay(order: int) -> None:
        ran.append("pay")

    return app


def record(app: App) -> BatchRecord:
    envelope = app.tasks["shop.pay"].envelope([1], {})
    delivery = Delivery(queue="default", body=envelope.encode(), message_id="m-1", receive_count=1)
    return BatchRecord(id="m-1", decode=lambda: delivery)


@pytest.mark.parametrize(
    ("backend", "options", "named"),
    [
        (
            "plain",
            {"idempotent": True},
            "task 'shop.pay' (idempotent=True) needs a store with ClaimStore",
        ),
        (
            "plain",
            {"rate_limit": "10/s"},
            "task 'shop.pay' (rate limit) needs a store with RateLimiter",
        ),
        (
            None,
            {"rate_limit": "10/s"},
            "task 'shop.pay' (rate limit) needs a store with RateLimiter",
        ),
    ],
)
def test_a_worker_refuses_to_start_on_a_store_that_lacks_what_a_feature_needs(
    plain: str, backend: str | None, options: dict[str, Any], named: str
) -> None:
    ran: list[str] = []
    app = make_app(plain if backend else None, ran, **options)
    app.tasks["shop.pay"].delay(1)
    with pytest.raises(ConfigurationError, match="cloudq worker cannot start") as raised:
        Worker(app, ["default"], poll_seconds=0.01)
    text = str(raised.value)
    assert named in text, text
    assert ("'plain://results' (ResultsOnly)" if backend else "no result backend is set") in text
    assert "result_backend" in text and "redis://" in text
    assert ran == [] and app.broker.stats("default").visible == 1, "nothing was received"


def test_a_worker_without_a_control_store_or_events_still_starts(plain: str) -> None:
    """The control plane and events are observability: on a results-only store a worker runs
    unseen (and with -E sends nothing), saying so at start."""
    Worker(make_app(plain, []), ["default"], events=True)


def test_a_serverless_handler_refuses_its_first_invocation_and_every_next(plain: str) -> None:
    ran: list[str] = []
    app = make_app(plain, ran, idempotent=True)
    for _ in range(2):  # not marked started: a container never runs with the feature off
        with pytest.raises(
            ConfigurationError, match=r"(?s)the test handler cannot start.*ClaimStore"
        ):
            run_batch(app, "test", [record(app)])
    assert ran == []


def test_beat_refuses_a_backend_without_claims(plain: str) -> None:
    app = make_app(plain, [])
    app.conf.beat_schedule = {"tick": {"task": "shop.pay", "schedule": 60, "args": [1]}}
    with pytest.raises(ConfigurationError, match=r"(?s)cloudq beat cannot start.*BeatStore"):
        Beat(app)


def test_beat_without_any_backend_runs_alone_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(None, [])
    app.conf.beat_schedule = {"tick": {"task": "shop.pay", "schedule": 60, "args": [1]}}
    with caplog.at_level(logging.WARNING, logger="cloudq"):
        Beat(app)
    assert "run one beat only" in caplog.text
