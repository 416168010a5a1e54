"""OpenTelemetry tracing on moto SQS: a real ``cloudq worker`` subprocess (``tests.apps.otel_app``
instruments itself and writes its spans as JSON lines to the file ``OTEL_TEST_SPANS`` names)
continues the test process's trace; the Lambda handler does the same in process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cloudq import App, chain
from cloudq.contrib.opentelemetry import CloudqInstrumentor
from cloudq.testing import wait_for
from cloudq_sqs.lambda_handler import lambda_handler
from cloudq_sqs.lambda_local import LocalEventSource
from tests.apps import otel_app
from tests.integration.stack import Stack, new_prefix

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    CloudqInstrumentor().instrument(tracer_provider=provider)
    yield exporter
    CloudqInstrumentor().uninstrument()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def only(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [s for s in spans.get_finished_spans() if s.name == name]
    return span


def test_a_worker_subprocess_continues_the_producers_trace(
    sqs_env: str,
    spans: InMemorySpanExporter,
    provider: TracerProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "worker-spans.jsonl"
    monkeypatch.setenv(otel_app.SPANS_ENV, str(path))
    prefix = new_prefix()
    broker = f"sqs://?prefix={prefix}"
    app_ref = "tests.apps.otel_app"
    with Stack(tmp_path, broker, "memory://", prefix, otel_app.make_app, app_ref) as s:
        producer = s.producer(result_backend=None)
        producer.ensure_queue("default")
        s.worker(["default"])
        add, mul = producer.tasks["otel.add"], producer.tasks["otel.mul"]
        with provider.get_tracer("test").start_as_current_span("request") as request:
            first = chain(add.s(2, 3), mul.s(10)).delay().parent

        def worker_spans() -> dict[str, dict[str, Any]]:
            return {r["name"]: r for r in otel_app.read_spans(path)}

        wait_for(
            lambda: "send otel.mul" in worker_spans() and "process otel.mul" in worker_spans(),
            timeout=30,
            message="the worker's spans",
        )
    send = only(spans, "send otel.add")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert send.attributes is not None and send.attributes["messaging.system"] == "aws_sqs"
    trace_id, send_id = hex_ids(send)
    process = worker_spans()["process otel.add"]
    assert process["kind"] == "CONSUMER"
    assert (process["trace_id"], process["parent_id"]) == (trace_id, send_id)
    assert process["attributes"]["messaging.system"] == "aws_sqs"
    assert process["attributes"]["messaging.destination.name"] == "default"
    assert first is not None and process["attributes"]["cloudq.task.id"] == first.id
    assert process["attributes"]["messaging.message.id"] == first.id  # the first copy's id
    assert process["attributes"]["cloudq.state"] == "SUCCESS"
    # The worker sends the chain link once otel.add has run: a child of that run.
    inner_send, inner_run = worker_spans()["send otel.mul"], worker_spans()["process otel.mul"]
    assert (inner_send["trace_id"], inner_send["parent_id"]) == (trace_id, process["span_id"])
    assert (inner_run["trace_id"], inner_run["parent_id"]) == (trace_id, inner_send["span_id"])


@pytest.fixture
def lambda_app(sqs_env: str) -> Iterator[App]:
    name = uuid.uuid4().hex[:10]
    app = otel_app.make_app(broker=f"sqs://?prefix=o{name}-", backend=f"memory://{name}")
    app.ensure_queue("default")
    yield app
    app.close()


def test_the_lambda_handler_continues_the_trace_through_a_chain(
    lambda_app: App, spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    source = LocalEventSource(lambda_app, lambda_handler(lambda_app), ["default"])
    add, mul = lambda_app.tasks["otel.add"], lambda_app.tasks["otel.mul"]
    with provider.get_tracer("test").start_as_current_span("request"):
        result = chain(add.s(1, 2), mul.s(5)).delay()
    wait_for(
        lambda: source.poll_once("default", wait_seconds=1) >= 0 and result.ready(),
        timeout=30,
        interval=0,
        message="the chain run by the handler",
    )
    assert result.get(timeout=1) == 15
    run_add, run_mul = only(spans, "process otel.add"), only(spans, "process otel.mul")
    send_add, send_mul = only(spans, "send otel.add"), only(spans, "send otel.mul")
    assert run_add.parent is not None and run_add.parent.span_id == send_add.context.span_id
    assert send_mul.parent is not None and send_mul.parent.span_id == run_add.context.span_id
    assert run_mul.parent is not None and run_mul.parent.span_id == send_mul.context.span_id
    assert len({s.context.trace_id for s in spans.get_finished_spans()}) == 1
