"""Error reports: an e-mail on a task's final failure (Celery dropped these in 4.0), and hooks.

A report is made when a task is dead-lettered (retries spent, or an error it does not retry),
never on each retry: ``ErrorReports`` is a middleware on the hook bus (``cloudq.middleware``)
that every app carries, called by the bus's ``dead_letter`` hook. Mails are throttled per
(task, error type): at most one per window, and the next one says how many were suppressed.
Arguments are redacted unless the task opts in with ``@app.task(report_args=True)``
(``shown_arguments``: the one rule; Sentry's reports use it too). A broken SMTP server never
fails the task or the worker: the failure is logged. ``app.on_failure(callback)`` takes any
reporter.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from cloudq.adapters.urls import redact_url
from cloudq.envelope import HEADER_ERROR_TRACEBACK, HEADER_ERROR_TYPE, Envelope
from cloudq.logsafe import get_logger
from cloudq.middleware import Middleware

if TYPE_CHECKING:
    from email.message import EmailMessage

    from cloudq.app import App

logger = get_logger("cloudq.reports")

SMTP_TIMEOUT_SECONDS = 10.0
REDACTED = "<redacted: set report_args=True on the task to include arguments>"


def arguments_shown(app: App, task_name: str | None) -> bool:
    """The one rule for showing a task's arguments outside the task (error reports, the
    dashboard): only a task registered here that opts in with ``report_args=True``."""
    task = app.tasks.get(task_name) if task_name else None
    return bool(task and task.options.report_args)


class ErrorReportSettings(BaseModel):
    """``app.conf.error_reports = {"to": [...], "from": ..., "smtp": "smtp://host:port"}``."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", defer_build=True)

    to: list[str] = Field(min_length=1)
    sender: str = Field(alias="from")
    smtp: str = "smtp://localhost:25"
    """``smtp://[user:password@]host:port``, or ``smtps://`` for TLS from the start."""
    tls: bool = False
    """STARTTLS on a plain ``smtp://`` connection."""
    window_seconds: float = Field(default=3600.0, gt=0)
    subject_prefix: str = "[cloudq]"

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The SMTP URL redacted: it may hold the mail account's password."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "smtp" else value


@dataclass(frozen=True)
class FailureReport:
    """What is known of a final failure."""

    task: str
    task_id: str
    attempt: int
    queue: str
    host: str
    reason: str
    error_type: str
    traceback: str
    args: Any
    kwargs: Any


def shown_arguments(app: App, envelope: Envelope | None) -> tuple[Any, Any]:
    """A failure report's ``(args, kwargs)``: the envelope's if ``arguments_shown``, else
    ``REDACTED``: arguments often hold personal data or secrets."""
    if envelope is not None and arguments_shown(app, envelope.task):
        return envelope.args, envelope.kwargs
    return REDACTED, REDACTED


class ErrorReports(Middleware):
    """The bus's ``dead_letter`` hook to ``app.reporter`` (hooks and e-mail)."""

    def dead_letter(self, app: App, **kwargs: Any) -> None:
        delivery = kwargs["delivery"]
        app.reporter.report(kwargs["envelope"], kwargs["reason"], delivery.queue)


@dataclass
class _Throttle:
    last_sent: float
    suppressed: int = 0


@dataclass
class Reporter:
    """Calls the hooks and sends the (throttled) e-mail for each final failure."""

    app: App
    hooks: list[Callable[[FailureReport], None]] = field(default_factory=list)
    _throttles: dict[tuple[str, str], _Throttle] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, envelope: Envelope | None, reason: str, queue: str) -> None:
        """Never raises: a reporter must not fail the task or the worker."""
        report = self._make(envelope, reason, queue)
        for hook in self.hooks:
            try:
                hook(report)
            except Exception:
                logger.exception("on_failure hook %r failed", hook)
        settings = self.app.conf.error_reports
        if settings is not None:
            self._mail(ErrorReportSettings.model_validate(settings), report)

    def _make(self, envelope: Envelope | None, reason: str, queue: str) -> FailureReport:
        headers = envelope.headers if envelope else {}
        args, kwargs = shown_arguments(self.app, envelope)
        return FailureReport(
            task=envelope.task if envelope else "<undecodable message>",
            task_id=envelope.id if envelope else "-",
            attempt=envelope.attempt if envelope else 0,
            queue=queue,
            host=socket.gethostname(),
            reason=reason,
            error_type=headers.get(HEADER_ERROR_TYPE, reason.split(":", 1)[0]),
            traceback=headers.get(HEADER_ERROR_TRACEBACK, ""),
            args=args,
            kwargs=kwargs,
        )

    def _mail(self, settings: ErrorReportSettings, report: FailureReport) -> None:
        key = (report.task, report.error_type)
        now = self.app.clock.monotonic()
        with self._lock:
            throttle = self._throttles.get(key)
            if throttle is not None and now - throttle.last_sent < settings.window_seconds:
                throttle.suppressed += 1
                return
            suppressed = throttle.suppressed if throttle else 0
            self._throttles[key] = _Throttle(last_sent=now)
        try:
            send_mail(settings, compose(settings, report, suppressed))
        except Exception as exc:  # noqa: BLE001 - SMTP trouble must never fail a task
            logger.error(
                "could not send the error report for %s[%s]: %s", report.task, report.task_id, exc
            )


def compose(settings: ErrorReportSettings, report: FailureReport, suppressed: int) -> EmailMessage:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["Subject"] = f"{settings.subject_prefix} {report.task} failed: {report.error_type}"
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.to)
    lines = [
        f"Task:      {report.task}",
        f"Id:        {report.task_id}",
        f"Attempt:   {report.attempt}",
        f"Queue:     {report.queue}",
        f"Worker:    {report.host}",
        f"Error:     {report.reason}",
        f"Args:      {report.args}",
        f"Kwargs:    {report.kwargs}",
    ]
    if suppressed:
        lines.append(f"Suppressed: {suppressed} more failure(s) of this kind since the last mail")
    msg.set_content("\n".join(lines) + "\n\n" + (report.traceback or "(no traceback)") + "\n")
    return msg


def send_mail(settings: ErrorReportSettings, msg: EmailMessage) -> None:
    import smtplib

    url = urlsplit(settings.smtp)
    host, port = url.hostname or "localhost", url.port
    client: smtplib.SMTP
    if url.scheme == "smtps":
        client = smtplib.SMTP_SSL(host, port or 465, timeout=SMTP_TIMEOUT_SECONDS)
    else:
        client = smtplib.SMTP(host, port or 25, timeout=SMTP_TIMEOUT_SECONDS)
    with client:
        if settings.tls and url.scheme != "smtps":
            client.starttls()
        if url.username:
            client.login(unquote(url.username), unquote(url.password or ""))
        client.send_message(msg)
