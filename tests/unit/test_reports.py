"""Error reports by e-mail against a real SMTP server on loopback (aiosmtpd), and hooks."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message

import pytest

from cloudq import App
from cloudq.reports import FailureReport
from cloudq.testing import FakeClock, process_one


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[str, Inbox]]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", inbox
    finally:
        controller.stop()


def make_app(smtp_url: str, **report: object) -> App:
    name = uuid.uuid4().hex
    reports = {"to": ["ops@example.com"], "from": "cloudq@example.com", "smtp": smtp_url, **report}
    app = App("r", broker=f"memory://{name}", clock=FakeClock(), error_reports=reports)

    @app.task(name="charge", autoretry_for=(ConnectionError,), max_retries=1, retry_backoff=1)
    def charge(card: str) -> None:
        raise ConnectionError("gateway down")

    @app.task(name="open_charge", report_args=True)
    def open_charge(card: str) -> None:
        raise ValueError("declined")

    return app


def run_all(app: App) -> None:
    for _ in range(20):
        if process_one(app) is None:
            app.clock.advance(1)  # type: ignore[attr-defined]


def test_one_mail_per_final_failure_not_per_retry(smtp: tuple[str, Inbox]) -> None:
    url, inbox = smtp
    app = make_app(url)
    app.tasks["charge"].delay("4111-1111")
    run_all(app)
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    body = mail.get_payload()
    assert "charge failed: builtins.ConnectionError" in mail["Subject"]
    for part in ("Attempt:   2", "Queue:     default", "raise ConnectionError", "Worker:"):
        assert part in body
    assert "4111" not in body and "redacted" in body


def test_arguments_only_when_the_task_opts_in(smtp: tuple[str, Inbox]) -> None:
    url, inbox = smtp
    app = make_app(url)
    app.tasks["open_charge"].delay("4111-1111")
    run_all(app)
    assert "4111-1111" in inbox.messages[0].get_payload()


def test_throttled_per_task_and_error_with_a_suppressed_count(smtp: tuple[str, Inbox]) -> None:
    url, inbox = smtp
    app = make_app(url, window_seconds=0.5)
    for _ in range(4):
        app.tasks["open_charge"].delay("x")
    run_all(app)
    assert len(inbox.messages) == 1
    app.clock.advance(0.6)  # type: ignore[attr-defined]
    app.tasks["open_charge"].delay("x")
    run_all(app)
    assert len(inbox.messages) == 2
    assert "Suppressed: 3 more failure(s)" in inbox.messages[1].get_payload()


def test_broken_smtp_never_fails_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed again: nothing listens there
    app = make_app(f"smtp://127.0.0.1:{dead}")
    seen: list[FailureReport] = []
    app.on_failure(seen.append)
    app.tasks["open_charge"].delay("x")
    run_all(app)
    assert "could not send the error report" in caplog.text
    assert [r.error_type for r in seen] == ["builtins.ValueError"]
    assert app.broker.stats("default").dead_lettered == 1


def test_bad_report_settings_are_refused() -> None:
    from cloudq import ConfigurationError

    with pytest.raises(ConfigurationError, match="error_reports"):
        App("r", error_reports={"to": []})


def test_reports_ride_the_hook_bus_after_a_raising_middleware(smtp: tuple[str, Inbox]) -> None:
    from cloudq.middleware import Middleware
    from cloudq.reports import ErrorReports

    class Broken(Middleware):
        def dead_letter(self, app: App, **kwargs: object) -> None:
            raise RuntimeError("a broken middleware")

    url, inbox = smtp
    app = make_app(url)
    app.add_middleware(Broken())
    assert sum(isinstance(m, ErrorReports) for m in app.hooks.middleware) == 1
    app.tasks["open_charge"].delay("x")
    run_all(app)
    assert len(inbox.messages) == 1
