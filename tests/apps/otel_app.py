"""An importable app traced with OpenTelemetry, as a user's tasks.py would be: the module calls
``CloudqInstrumentor().instrument()`` with a tracer provider of its own, so a ``cloudq worker``
subprocess and each processes-pool child trace too. With ``OTEL_TEST_SPANS`` set, every span
this process ends is appended to that file as one JSON line (``SpanFile``); without it the
module instruments nothing (the test process instruments itself)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from cloudq import App
from cloudq.contrib.opentelemetry import CloudqInstrumentor

SPANS_ENV = "OTEL_TEST_SPANS"


class SpanFile(SpanExporter):
    """Spans as JSON lines (ids in hex, as traceparent writes them), appended under a lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(as_record(span)) + "\n" for span in spans]
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.writelines(lines)
        return SpanExportResult.SUCCESS


def as_record(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "pid": os.getpid(),
    }


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def make_app(**settings: Any) -> App:
    app = App("otel", **settings)

    @app.task(name="otel.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="otel.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    return app


if os.environ.get(SPANS_ENV):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SpanFile(os.environ[SPANS_ENV])))
    CloudqInstrumentor().instrument(tracer_provider=provider)

# A worker subprocess gets its broker from CLOUDQ_BROKER_URL; the unit tests' memory one else.
app = (
    make_app()
    if os.environ.get("CLOUDQ_BROKER_URL")
    else make_app(broker="memory://otel-app", backend="memory://otel-app")
)
