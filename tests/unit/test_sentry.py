"""Final failures to Sentry (``cloudq.contrib.sentry``), through sentry-sdk's transport
interface into a list: no network."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk

from cloudq import App
from cloudq.contrib.sentry import SentryReports
from cloudq.testing import FakeClock, process_one


class Captured(sentry_sdk.transport.Transport):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Any) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(event)


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    transport = Captured()
    sentry_sdk.init(
        dsn="https://key@sentry.invalid/1", transport=transport, default_integrations=False
    )
    try:
        yield transport.events
    finally:
        sentry_sdk.get_client().close(timeout=0)
        sentry_sdk.init(default_integrations=False)  # no DSN: reports nothing from now on


def make_app() -> App:
    app = App("sentry", broker=f"memory://{uuid.uuid4().hex}", clock=FakeClock())
    app.add_middleware(SentryReports())

    @app.task(name="charge", autoretry_for=(ConnectionError,), max_retries=1, retry_backoff=1)
    def charge(card: str) -> None:
        secret = card  # a local variable: Sentry would send it with the frame
        raise ConnectionError(f"gateway down for {len(secret)} digits")

    @app.task(name="open_charge", report_args=True)
    def open_charge(card: str) -> None:
        raise ValueError("declined")

    return app


def run_all(app: App) -> None:
    for _ in range(10):
        if process_one(app) is None:
            app.clock.advance(1)  # type: ignore[attr-defined]


def test_one_report_per_final_failure_with_tags_and_redacted_arguments(
    events: list[dict[str, Any]],
) -> None:
    app = make_app()
    sent = app.tasks["charge"].delay("4111-1111")
    run_all(app)
    assert len(events) == 1, "the retry is not reported, the final failure is"
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "ConnectionError"
    tags = event["tags"]
    assert tags["cloudq.task"] == "charge" and tags["cloudq.task_id"] == sent.id
    assert tags["cloudq.attempt"] == "2" and tags["cloudq.queue"] == "default"
    assert event["contexts"]["cloudq"]["root_id"] == sent.id
    assert "4111" not in repr(event), "neither the arguments nor the frames' variables"


def test_arguments_when_the_task_opts_in_and_in_eager_mode(events: list[dict[str, Any]]) -> None:
    app = make_app()
    app.tasks["open_charge"].apply(args=("4111-1111",))
    assert len(events) == 1
    assert events[0]["contexts"]["cloudq"]["args"] == ["4111-1111"]
