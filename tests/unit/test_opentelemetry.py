"""OpenTelemetry tracing (cloudq.contrib.opentelemetry) with the SDK's in-memory exporter, on
the memory broker: spans, their attributes and parents in a worker thread, a processes-pool
child, eager mode, retries, chain links, a chord body and delay hops; bad trace headers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cloudq import App, chain, chord
from cloudq.adapters.base import OutgoingMessage
from cloudq.contrib.opentelemetry import CloudqInstrumentor, messaging_system
from cloudq.envelope import decode
from cloudq.testing import FakeClock, process_one, start_worker, wait_for
from tests.apps import otel_app


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """Every app of this process traced into an in-memory exporter, for the test only."""
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    CloudqInstrumentor().instrument(tracer_provider=provider)
    yield exporter
    CloudqInstrumentor().uninstrument()


def make_app(**kw: Any) -> App:
    name = f"otel-{uuid.uuid4().hex[:8]}"
    return App(name, broker=f"memory://{name}", backend=f"memory://{name}", **kw)


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = named(exporter, name)
    return span


def assert_child(child: ReadableSpan, parent: ReadableSpan | trace.Span) -> None:
    ctx = parent.get_span_context()
    assert ctx is not None and child.parent is not None, f"{child.name} has no parent"
    assert (child.parent.trace_id, child.parent.span_id) == (ctx.trace_id, ctx.span_id), (
        f"{child.name} is not a child of {getattr(parent, 'name', parent)}"
    )


def test_send_and_process_spans_with_their_attributes_in_a_worker(
    spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    app = make_app()

    @app.task(name="t.inner")
    def inner() -> None: ...

    @app.task(name="t.outer", bind=True)
    def outer(self: Any, x: int) -> str:
        inner.delay()  # sent from inside the task: a child of its process span
        return str(self.request.headers["traceparent"])

    tracer = provider.get_tracer("test")
    with start_worker(app), tracer.start_as_current_span("request") as request:
        result = outer.delay(1)
        carried = result.get(timeout=10)
        wait_for(lambda: named(spans, "process t.inner"), timeout=10, message="inner ran")

    send, process = one(spans, "send t.outer"), one(spans, "process t.outer")
    assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert_child(send, request)
    assert_child(process, send)
    assert carried.split("-")[2] == f"{send.context.span_id:016x}"
    assert_child(one(spans, "send t.inner"), process)
    assert_child(one(spans, "process t.inner"), one(spans, "send t.inner"))
    for span, operation in ((send, "send"), (process, "process")):
        attrs = dict(span.attributes or {})
        assert attrs["messaging.system"] == "memory"
        assert attrs["messaging.operation.name"] == operation
        assert attrs["messaging.destination.name"] == "default"
        assert attrs["cloudq.task.name"] == "t.outer"
        assert attrs["cloudq.task.id"] == result.id
        assert attrs["cloudq.task.attempt"] == 1
    assert process.attributes is not None
    assert process.attributes["messaging.message.id"] == result.id  # the memory broker's id
    assert process.attributes["cloudq.state"] == "SUCCESS"


def test_a_retry_then_chain_links_are_one_trace_each_a_child_of_the_run_that_sent_it(
    spans: InMemorySpanExporter,
) -> None:
    app = make_app(signing_keys=["k1"])  # the trace headers are signed with the rest
    attempts: list[int] = []

    @app.task(name="t.flaky", bind=True, autoretry_for=(ConnectionError,), retry_backoff=0.01)
    def flaky(self: Any, x: int) -> int:
        attempts.append(self.request.attempt)
        if len(attempts) == 1:
            raise ConnectionError("once")
        return x

    @app.task(name="t.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    with start_worker(app):
        assert chain(flaky.s(2), mul.s(10), mul.s(3)).delay().get(timeout=10) == 60

    sends, runs = named(spans, "send t.flaky"), named(spans, "process t.flaky")
    assert [s.attributes["cloudq.task.attempt"] for s in sends] == [1, 2]  # type: ignore[index]
    assert [s.attributes["cloudq.state"] for s in runs] == ["RETRY", "SUCCESS"]  # type: ignore[index]
    assert [e.name for e in runs[0].events] == ["retry", "exception"]
    assert_child(runs[0], sends[0])
    assert_child(sends[1], runs[0])  # the retry is sent by the failed run
    assert_child(runs[1], sends[1])
    mul_sends, mul_runs = named(spans, "send t.mul"), named(spans, "process t.mul")
    assert_child(mul_sends[0], runs[1])  # the chain link is sent by the run that succeeded
    assert_child(mul_runs[0], mul_sends[0])
    assert_child(mul_sends[1], mul_runs[0])
    assert len({s.context.trace_id for s in spans.get_finished_spans()}) == 1


def test_the_chord_body_is_a_child_of_the_header_task_that_completed_the_chord(
    spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    app = make_app()

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    with start_worker(app, concurrency=1):
        with provider.get_tracer("test").start_as_current_span("request"):
            result = chord([add.s(1, 1), add.s(2, 2)])(tsum.s())
        assert result.get(timeout=10) == 6

    header_runs = named(spans, "process t.add")
    body_send = one(spans, "send t.tsum")
    assert body_send.parent is not None
    assert body_send.parent.span_id in {s.context.span_id for s in header_runs}
    assert_child(one(spans, "process t.tsum"), body_send)
    assert len({s.context.trace_id for s in spans.get_finished_spans()}) == 1


def test_delay_hops_stay_in_the_trace_of_the_send(spans: InMemorySpanExporter) -> None:
    clock = FakeClock()
    name = f"otel-{uuid.uuid4().hex[:8]}"
    app = App(
        name,
        broker=f"memory://{name}?max_delay_seconds=10",
        backend=f"memory://{name}",
        clock=clock,
    )

    @app.task(name="t.later")
    def later() -> str:
        return "done"

    result = later.apply_async(countdown=25)
    for step in (10, 10, 5):
        clock.advance(step)
        assert process_one(app) is not None
    assert result.get(timeout=1) == "done"
    first, *hops = named(spans, "send t.later")
    assert len(hops) == 2  # 25 s at 10 s a hop
    assert_child(hops[0], first)
    assert_child(hops[1], hops[0])
    assert_child(one(spans, "process t.later"), hops[1])


def test_a_failure_is_recorded_on_the_process_span_and_its_error_callback_is_its_child(
    spans: InMemorySpanExporter,
) -> None:
    app = make_app()

    @app.task(name="t.boom", max_retries=0)
    def boom() -> None:
        raise ValueError("no such order")

    @app.task(name="t.alert")
    def alert(task_id: str) -> None: ...

    failing = boom.s()
    failing.link_error(alert.s())
    failing.delay()
    assert process_one(app) is not None
    span = one(spans, "process t.boom")
    assert process_one(app) is not None  # the error callback, sent by the failed run
    assert_child(one(spans, "send t.alert"), span)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: no such order"
    assert span.attributes is not None and span.attributes["cloudq.state"] == "FAILURE"
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes is not None and event.attributes["exception.type"] == "ValueError"


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "garbage"},
        {"traceparent": f"00-{'0' * 32}-{'0' * 16}-01"},  # all-zero ids: invalid
        {"traceparent": "00-é-ü-01", "tracestate": "=" * 5000},
        {"traceparent": f"ff-{'a' * 32}-{'b' * 16}-01"},  # version ff is forbidden
        {"tracestate": "k=v"},
    ],
)
def test_malformed_trace_headers_are_ignored_and_the_task_runs(
    spans: InMemorySpanExporter, headers: dict[str, str]
) -> None:
    app = make_app()

    @app.task(name="t.ok")
    def ok() -> int:
        return 1

    @app.task(name="t.next")
    def nxt(x: int) -> int:
        return x

    chain(ok.s(), nxt.s()).delay()
    [sent] = app.broker.receive("default", 1, 0, 30)
    app.broker.ack([sent])
    envelope = decode(sent.body).model_copy(update={"headers": headers})  # as a forger sends it
    app.broker.send("default", [OutgoingMessage(envelope.encode(), message_id=envelope.id)])
    assert process_one(app) is not None
    assert app.AsyncResult(envelope.id).get(timeout=1) == 1
    run = one(spans, "process t.ok")
    assert run.parent is None  # a new trace
    link = one(spans, "send t.next")
    assert_child(link, run)


def test_eager_apply_and_always_eager_run_in_the_callers_trace(
    spans: InMemorySpanExporter, provider: TracerProvider
) -> None:
    app = make_app()
    calls: list[int] = []

    @app.task(name="t.flaky", autoretry_for=(ConnectionError,))
    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("once")
        return len(calls)

    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        assert flaky.apply().get() == 2
        app.conf.task_always_eager = True
        assert flaky.delay().get() == 3
    first, retried, always = named(spans, "process t.flaky")
    states = [r.attributes["cloudq.state"] for r in (first, retried, always)]  # type: ignore[index]
    assert states == ["RETRY", "SUCCESS", "SUCCESS"]
    assert_child(first, caller)
    assert_child(retried, first)  # the retry carries the context of the run that failed
    assert_child(always, caller)


def test_a_processes_pool_child_traces_under_the_producer_and_its_follow_ups_stay_in_the_trace(
    spans: InMemorySpanExporter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child imports the app module, which instruments itself and writes its spans to a
    file; the parent sends the chain link the child's run leads to, as the run's child."""
    path = tmp_path / "spans.jsonl"
    monkeypatch.setenv(otel_app.SPANS_ENV, str(path))
    app = otel_app.app  # created before instrument(): traced all the same
    add, mul = app.tasks["otel.add"], app.tasks["otel.mul"]
    with start_worker(app, pool="processes", concurrency=1, app_ref="tests.apps.otel_app:app"):
        assert chain(add.s(2, 3), mul.s(10)).delay().get(timeout=30) == 50
        wait_for(
            lambda: (
                {"process otel.add", "process otel.mul"}
                <= {s["name"] for s in otel_app.read_spans(path)}
            ),
            timeout=10,
            message="both runs exported by the child",
        )
    child = {s["name"]: s for s in otel_app.read_spans(path)}
    send_add, send_mul = one(spans, "send otel.add"), one(spans, "send otel.mul")
    trace_id = f"{send_add.context.trace_id:032x}"
    assert child["process otel.add"]["pid"] != os.getpid()
    assert child["process otel.add"]["trace_id"] == trace_id
    assert child["process otel.add"]["parent_id"] == f"{send_add.context.span_id:016x}"
    # The parent process sends the link: it never saw the child's span, whose context comes
    # back with the outcome's envelope.
    assert f"{send_mul.context.trace_id:032x}" == trace_id
    assert send_mul.parent is not None
    assert f"{send_mul.parent.span_id:016x}" == child["process otel.add"]["span_id"]
    assert child["process otel.mul"]["parent_id"] == f"{send_mul.context.span_id:016x}"


def test_uninstrument_stops_tracing(spans: InMemorySpanExporter) -> None:
    app = make_app()

    @app.task(name="t.quiet")
    def quiet() -> None: ...

    CloudqInstrumentor().uninstrument()
    quiet.delay()
    [sent] = app.broker.receive("default", 1, 0, 30)
    assert "traceparent" not in decode(sent.body).headers
    app.broker.release([sent], 0)
    assert process_one(app) is not None
    assert spans.get_finished_spans() == ()


def test_opentelemetry_instrument_finds_the_instrumentor_by_its_entry_point() -> None:
    """``opentelemetry-instrument cloudq worker`` loads every ``opentelemetry_instrumentor``."""
    from importlib.metadata import entry_points

    [found] = entry_points(group="opentelemetry_instrumentor", name="cloudq")
    assert found.load() is CloudqInstrumentor


@pytest.mark.parametrize(
    ("url", "system"),
    [
        ("sqs://?prefix=shop-", "aws_sqs"),
        ("pubsub://my-project", "gcp_pubsub"),
        ("servicebus://ns.servicebus.windows.net", "servicebus"),
        ("memory://t", "memory"),
    ],
)
def test_messaging_system_names_the_provider_as_the_conventions_do(url: str, system: str) -> None:
    assert messaging_system(url) == system


def test_a_run_stopped_midway_ends_its_span_and_gives_the_context_back(
    spans: InMemorySpanExporter,
) -> None:
    """``revoke --terminate`` ends a run with ``revoked`` instead of ``after_execute``; a run
    left open inside another (an ``apply()`` interrupted) is ended with the one around it."""
    app = make_app()

    @app.task(name="t.spin")
    def spin() -> None: ...

    def current() -> bool:
        return trace.get_current_span().get_span_context().is_valid

    stopped, outer, inner = (spin.envelope((), {}) for _ in range(3))
    app.hooks.emit("before_execute", envelope=stopped, task=spin, request=None, headers={})
    assert current()
    app.hooks.emit("revoked", envelope=stopped, terminated=True, expired=False)
    assert not current()
    app.hooks.emit("before_execute", envelope=outer, task=spin, request=None, headers={})
    app.hooks.emit("before_execute", envelope=inner, task=spin, request=None, headers={})
    app.hooks.emit("after_execute", envelope=outer, task=spin, request=None, state="SUCCESS")
    assert not current()
    by_id = {s.attributes["cloudq.task.id"]: s for s in spans.get_finished_spans()}  # type: ignore[index]
    assert by_id[stopped.id].attributes["cloudq.state"] == "REVOKED"  # type: ignore[index]
    assert by_id[stopped.id].status.status_code is StatusCode.ERROR
    assert by_id[inner.id].status.description == "its task did not finish"
    assert by_id[outer.id].status.status_code is StatusCode.UNSET
    assert_child(by_id[inner.id], by_id[outer.id])


def test_without_the_extra_the_import_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, "cloudq.contrib.opentelemetry")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'cloudqueue-tasks\[otel\]'"):
        importlib.import_module("cloudq.contrib.opentelemetry")


def test_a_serverless_batch_end_flushes_batched_spans() -> None:
    """A Lambda or Functions container may be frozen right after its batch: the spans a batch
    processor still holds go out at ``invocation_end``, not at its next timer."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=600_000))
    CloudqInstrumentor().instrument(tracer_provider=provider)
    try:
        app = make_app()

        @app.task(name="t.batched")
        def batched() -> None: ...

        batched.apply()
        assert exporter.get_finished_spans() == ()  # held by the batch processor
        app.hooks.emit("invocation_end", platform="aws-lambda")
        assert [s.name for s in exporter.get_finished_spans()] == ["process t.batched"]
    finally:
        CloudqInstrumentor().uninstrument()
        provider.shutdown()
