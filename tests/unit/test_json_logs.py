"""JSON logs and the task context on log records (``cloudq.contrib.logging``)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from cloudq import App
from cloudq.contrib.logging import TaskContextFilter, json_formatter, use_json_logs
from cloudq.envelope import Envelope
from cloudq.request import Request, current_request
from cloudq.testing import process_one

FORGED = "evil\n[2026-01-01 00:00:00: INFO/MainProcess] forged\x1b[31m"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A handler on the ``shop`` logger writing JSON with the task context."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(json_formatter())
    handler.addFilter(TaskContextFilter(escape=False))
    log = logging.getLogger("shop")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield out
    finally:
        log.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def make_app() -> App:
    app = App("logs", broker=f"memory://{uuid.uuid4().hex}")

    @app.task(name="shop.charge")
    def charge(order: int) -> None:
        logging.getLogger("shop").info("charging order %d", order)

    return app


def test_every_line_inside_a_task_carries_its_ids_in_the_worker_and_eager(
    stream: io.StringIO,
) -> None:
    app = make_app()
    sent = app.tasks["shop.charge"].delay(7)
    process_one(app)
    app.tasks["shop.charge"].apply(args=(8,))
    logging.getLogger("shop").info("outside any task")
    worker, eager, outside = lines(stream)
    assert worker["message"] == "charging order 7" and worker["level"] == "INFO"
    assert worker["task_id"] == sent.id and worker["root_id"] == sent.id
    assert (worker["task"], worker["attempt"], worker["queue"]) == ("shop.charge", 1, "default")
    assert eager["task"] == "shop.charge" and eager["message"] == "charging order 8"
    assert "task_id" not in outside


def forged_request() -> Request:
    envelope = Envelope(
        v=1, id="id-1", task=FORGED, queue=FORGED, root_id=FORGED, created_at=datetime.now(UTC)
    )
    return Request(envelope)


def test_values_from_the_message_stay_in_their_field_or_on_their_line() -> None:
    record = logging.LogRecord("shop", logging.INFO, __file__, 1, "hello", None, None)
    token = current_request.set(forged_request())
    try:
        TaskContextFilter().filter(record)  # text handlers: escaped as cloudq.logsafe does
        text = logging.Formatter("%(task)s %(queue)s %(root_id)s %(message)s").format(record)
        assert "\n" not in text and "\x1b" not in text and "\\n[2026" in text
        raw = logging.LogRecord("shop", logging.INFO, __file__, 1, "hello", None, None)
        TaskContextFilter(escape=False).filter(raw)  # JSON: its own escaping keeps the field
        line = json_formatter().format(raw)
        assert "\n" not in line and json.loads(line)["task"] == FORGED
    finally:
        current_request.reset(token)


def test_a_default_for_lines_outside_tasks_for_text_formats() -> None:
    record = logging.LogRecord("shop", logging.INFO, __file__, 1, "hello", None, None)
    TaskContextFilter(default="-").filter(record)
    assert logging.Formatter("[%(task_id)s] %(message)s").format(record) == "[-] hello"


def test_trace_ids_when_opentelemetry_is_importable() -> None:
    trace = pytest.importorskip(
        "opentelemetry.trace", reason="the OpenTelemetry API is not installed"
    )
    context = trace.SpanContext(
        trace_id=0x1234, span_id=0x56, is_remote=False, trace_flags=trace.TraceFlags(1)
    )
    record = logging.LogRecord("shop", logging.INFO, __file__, 1, "hello", None, None)
    token = current_request.set(forged_request())
    try:
        with trace.use_span(trace.NonRecordingSpan(context)):
            TaskContextFilter().filter(record)
    finally:
        current_request.reset(token)
    assert record.trace_id == f"{0x1234:032x}" and record.span_id == f"{0x56:016x}"


def test_use_json_logs_formats_the_root_handlers() -> None:
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    # pytest's own capture handlers are root handlers too: give them back what they had.
    saved = [(h, h.formatter, list(h.filters)) for h in root.handlers]
    root.addHandler(handler)
    try:
        use_json_logs()
        root.warning("plain %s", "words")
    finally:
        root.removeHandler(handler)
        for other, formatter, filters in saved:
            other.setFormatter(formatter)
            other.filters[:] = filters
    assert json.loads(out.getvalue())["message"] == "plain words"
