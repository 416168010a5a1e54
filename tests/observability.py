"""What the observability matrix's in-process tests share (eager mode, the three serverless
handlers): every integration on at once, each writing where the test reads it. OpenTelemetry
spans to an in-memory exporter, the serverless metric lines and JSON log lines to strings,
Sentry events through a sentry-sdk transport into a list (no network), error reports through a
recording ``app.on_failure`` hook. ``obs.charge`` succeeds and logs; ``obs.decline`` fails for
good with a card number in its arguments (which no report may show)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sentry_sdk
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cloudq import App
from cloudq.contrib.logging import TaskContextFilter, json_formatter
from cloudq.contrib.opentelemetry import CloudqInstrumentor
from cloudq.contrib.sentry import SentryReports
from cloudq.reports import FailureReport

CARD = "4111-1111-1111-1111"
ORDER = 42
LOGGER = "obs"


class Captured(sentry_sdk.transport.Transport):
    """The events sentry-sdk would send, kept in a list."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Any) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(event)


@dataclass
class Observed:
    """Where each integration wrote."""

    provider: TracerProvider
    exporter: InMemorySpanExporter
    logs: io.StringIO
    events: list[dict[str, Any]]
    reports: list[FailureReport] = field(default_factory=list)
    metrics: io.StringIO = field(default_factory=io.StringIO)

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines()]

    def metric_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.metrics.getvalue().splitlines()]

    def watch(self, app: App, *middleware: Any) -> App:
        """``app`` with Sentry reports, a recording error-report hook and ``middleware``."""
        app.add_middleware(SentryReports())
        app.on_failure(self.reports.append)
        for m in middleware:
            app.add_middleware(m)
        return app


@contextmanager
def observing() -> Iterator[Observed]:
    """Tracing, Sentry and a JSON log handler for this test, all undone after it."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    CloudqInstrumentor().instrument(tracer_provider=provider)
    transport = Captured()
    sentry_sdk.init(
        dsn="https://key@sentry.invalid/1", transport=transport, default_integrations=False
    )
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(json_formatter())
    handler.addFilter(TaskContextFilter(escape=False))
    log = logging.getLogger(LOGGER)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield Observed(provider, exporter, logs, transport.events)
    finally:
        log.removeHandler(handler)
        sentry_sdk.get_client().close(timeout=0)
        sentry_sdk.init(default_integrations=False)  # no DSN: reports nothing from now on
        CloudqInstrumentor().uninstrument()


def add_tasks(app: App) -> App:
    @app.task(name="obs.charge")
    def charge(order: int) -> int:
        logging.getLogger(LOGGER).info("charging order %d", order)
        return order

    @app.task(name="obs.decline")
    def decline(card: str) -> None:
        number = card  # a local variable: Sentry would send it with the frame
        raise ValueError(f"declined a card of {len(number)} characters")

    return app


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def check_logs_sentry_and_reports(observed: Observed, charged: str, declined: str) -> None:
    """What every place checks the same way: the JSON log line logged inside ``obs.charge``
    carries its task's and span's ids; one Sentry event and at most one error report, both for
    ``obs.decline`` and both without the card number."""
    [run] = observed.spans("process obs.charge")
    trace_id, span_id = hex_ids(run)
    [line] = [r for r in observed.log_lines() if r["message"] == f"charging order {ORDER}"]
    assert (line["task_id"], line["task"], line["attempt"]) == (charged, "obs.charge", 1)
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)
    [event] = observed.events
    assert (event["tags"]["cloudq.task"], event["tags"]["cloudq.task_id"]) == (
        "obs.decline",
        declined,
    )
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    assert CARD not in repr(event), "neither the arguments nor the frames' variables"
    for report in observed.reports:
        assert (report.task, report.task_id) == ("obs.decline", declined)
        assert CARD not in repr(report)
