"""OpenTelemetry tracing on the hook bus, as opentelemetry-instrumentation-celery traces Celery.

``CloudqInstrumentor().instrument()`` (``pip install 'cloudqueue-tasks[otel]'``) adds one
middleware to every app's bus (``cloudq.middleware.add_everywhere``): no call in the worker.
Each send is a PRODUCER span ``send <task>`` from ``before_publish`` to ``after_publish``,
whose W3C ``traceparent``/``tracestate`` go in the envelope headers; each run is a CONSUMER
span ``process <task>`` from ``before_execute`` to ``after_execute``, a child of the context
the message carried, current while the task body runs. Both carry the messaging semantic
conventions' attributes and ``cloudq.task.*`` ones; the outcome is ``cloudq.state``, an error
is recorded on the span (status ERROR when the task failed for good).

Parents, so that one trace links a request to everything its task leads to: a message that
already carries a trace context continues it, a new one is a child of the current span.

- a task sent while a span is current (a web request, a task body) is that span's child;
- what a run leads to (its retry, chain links, a chord body, error callbacks) is sent after
  ``after_execute``, by a processes-pool child's parent even: the run's context is put in the
  ``before_execute`` headers, which the core carries to those envelopes, so each is the run's
  child wherever it is sent;
- a delay hop carries the context of the send before it.

Headers read from a message are untrusted: a malformed ``traceparent`` is ignored (the span
starts a new trace), nothing here raises into the worker (the bus logs a hook that does).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cloudq import __version__
from cloudq.distribution import install_hint

try:
    from opentelemetry import context, propagate, trace
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as exc:  # without the extra: say which to install
    raise ImportError(
        f"cloudq.contrib.opentelemetry needs its extra ({exc}): {install_hint('otel')}"
    ) from exc

from cloudq.envelope import TRACE_CONTEXT_HEADERS
from cloudq.middleware import Middleware, add_everywhere, remove_everywhere

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

    from cloudq.app import App
    from cloudq.envelope import Envelope

__all__ = ["MESSAGING_SYSTEMS", "CloudqInstrumentor", "TracingMiddleware"]

MESSAGING_SYSTEMS = {"sqs": "aws_sqs", "pubsub": "gcp_pubsub", "servicebus": "servicebus"}
"""``messaging.system`` by broker URL scheme (the semantic conventions' names); another
broker's is its scheme (``memory``)."""

PENDING_SENDS_MAX = 256
"""Producer spans a thread keeps waiting for ``after_publish``: a send that raised never gets
one, so past this many the oldest are ended (with an error status) instead of kept."""


@lru_cache(maxsize=64)
def messaging_system(broker_url: str) -> str:
    """The ``messaging.system`` attribute for a broker URL."""
    scheme = urlsplit(broker_url).scheme
    return MESSAGING_SYSTEMS.get(scheme, scheme or "unknown")


def _attributes(app: App, envelope: Envelope, queue: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": messaging_system(app.conf.broker_url),
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": queue,
        "messaging.message.conversation_id": envelope.root_id or envelope.id,
        "cloudq.task.name": envelope.task,
        "cloudq.task.id": envelope.id,
        "cloudq.task.attempt": envelope.attempt,
    }


def carried_context(headers: Mapping[str, str]) -> Context | None:
    """The context a message's headers carry, or None when they carry none that is valid.
    The headers are untrusted: whatever the propagator makes of them never raises here."""
    try:
        found = propagate.extract(headers)
    except Exception:  # noqa: BLE001 - a propagator's bug must not fail the task
        return None
    return found if trace.get_current_span(found).get_span_context().is_valid else None


class _Running:
    """A consumer span and the context token that made it current."""

    __slots__ = ("span", "task_id", "token")

    def __init__(self, task_id: str, span: Span, token: object) -> None:
        self.task_id, self.span, self.token = task_id, span, token


class _ThreadState(threading.local):
    """Per thread: a worker slot, a handler and ``apply()`` run a task and send what follows
    it on one thread, so a span's hooks meet there (a pool child is a process of its own)."""

    def __init__(self) -> None:
        self.sending: dict[str, Span] = {}
        """Producer spans by task id, from ``before_publish`` to ``after_publish``."""
        self.running: list[_Running] = []
        """Consumer spans, innermost last (``apply()`` inside a task nests)."""
        self.delivery: tuple[str, str] | None = None
        """(task id, message id) of the delivery this thread received last."""


class TracingMiddleware(Middleware):
    """The hooks that make the spans; ``CloudqInstrumentor`` adds it to every app."""

    def __init__(self, tracer: trace.Tracer, provider: object = None) -> None:
        self._tracer = tracer
        self._provider = provider
        self._local = _ThreadState()

    # --- producer ---------------------------------------------------------------------------
    def before_publish(self, app: App, **kw: Any) -> None:
        envelope: Envelope = kw["envelope"]
        headers: dict[str, str] = kw["headers"]
        parent = carried_context(envelope.headers)  # None: the current context
        span = self._tracer.start_span(
            f"send {envelope.task}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=_attributes(app, envelope, kw["queue"], "send"),
        )
        _carry(headers, trace.set_span_in_context(span, parent))
        sending = self._local.sending
        stale = sending.pop(envelope.id, None)
        if stale is not None:
            _abandon(stale, "sent again before its send completed")
        sending[envelope.id] = span
        while len(sending) > PENDING_SENDS_MAX:
            _abandon(sending.pop(next(iter(sending))), "its send did not complete")

    def after_publish(self, app: App, **kw: Any) -> None:
        span = self._local.sending.pop(kw["envelope"].id, None)
        if span is not None:
            span.end()

    # --- consumer ---------------------------------------------------------------------------
    def received(self, app: App, **kw: Any) -> None:
        envelope, delivery = kw["envelope"], kw.get("delivery")
        self._local.delivery = (envelope.id, delivery.message_id) if delivery else None

    def before_execute(self, app: App, **kw: Any) -> None:
        envelope: Envelope = kw["envelope"]
        local = self._local
        parent = carried_context(envelope.headers)
        attributes: dict[str, AttributeValue] = _attributes(
            app, envelope, envelope.queue, "process"
        )
        delivery = local.delivery
        message_id = delivery[1] if delivery is not None and delivery[0] == envelope.id else None
        attributes["messaging.message.id"] = message_id or envelope.id
        span = self._tracer.start_span(
            f"process {envelope.task}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        running = trace.set_span_in_context(span, parent)
        headers = kw.get("headers")
        if headers is not None:
            _carry(headers, running)  # what the run leads to is its child
        token = context.attach(running)
        local.running.append(_Running(envelope.id, span, token))

    def _finish(self, task_id: str) -> Span | None:
        """Take the consumer span of ``task_id`` off this thread (ending any left open inside
        it) and make the context before it current again."""
        running = self._local.running
        for at in range(len(running) - 1, -1, -1):
            if running[at].task_id == task_id:
                break
        else:
            return None
        for inner in reversed(running[at + 1 :]):
            _abandon(inner.span, "its task did not finish")
            context.detach(inner.token)  # type: ignore[arg-type]
        entry = running[at]
        del running[at:]
        context.detach(entry.token)  # type: ignore[arg-type]
        return entry.span

    def after_execute(self, app: App, **kw: Any) -> None:
        span = self._finish(kw["envelope"].id)
        if span is None:
            return
        state = str(kw.get("state"))
        span.set_attribute("cloudq.state", state)
        exc = kw.get("exception")
        if isinstance(exc, BaseException):
            span.record_exception(exc)
            if state == "FAILURE":
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        elif state == "FAILURE":
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def retry(self, app: App, **kw: Any) -> None:
        running = self._local.running
        if running and running[-1].task_id == kw["envelope"].id:
            eta = kw.get("eta")
            attributes = {"cloudq.retry.eta": eta.isoformat()} if eta is not None else {}
            running[-1].span.add_event("retry", attributes)

    def revoked(self, app: App, **kw: Any) -> None:
        if not kw.get("terminated"):
            return  # never started: no consumer span
        span = self._finish(kw["envelope"].id)
        if span is not None:
            span.set_attribute("cloudq.state", "REVOKED")
            span.set_status(Status(StatusCode.ERROR, "revoked while running"))
            span.end()

    # --- processes --------------------------------------------------------------------------
    def _flush(self) -> None:
        flush = getattr(self._provider or trace.get_tracer_provider(), "force_flush", None)
        if callable(flush):
            flush()

    def process_stop(self, app: App, **kw: Any) -> None:
        """A pool child exits: its batched spans go first."""
        self._flush()

    def worker_stop(self, app: App, **kw: Any) -> None:
        self._flush()

    def invocation_end(self, app: App, **kw: Any) -> None:
        """A serverless batch is done: the platform may freeze the container before a batch
        processor's timer fires, so its spans go now."""
        self._flush()


def _carry(headers: dict[str, str], ctx: Context) -> None:
    """Put ``ctx`` in ``headers`` in place of any trace context they had."""
    for name in (*TRACE_CONTEXT_HEADERS, *propagate.get_global_textmap().fields):
        headers.pop(name, None)
    propagate.inject(headers, context=ctx)


def _abandon(span: Span, why: str) -> None:
    span.set_status(Status(StatusCode.ERROR, why))
    span.end()


class CloudqInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``CloudqInstrumentor().instrument(tracer_provider=...)`` traces every app in this
    process, ``uninstrument()`` stops. A processes-pool child imports the app module: call
    ``instrument()`` there (or run under ``opentelemetry-instrument``, which finds this class by
    its entry point) and configure the tracer provider in the same place, so every child has
    both."""

    _middleware: TracingMiddleware | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # cloudq itself: a Lambda zip may lack the metadata a version check reads

    def _instrument(self, **kwargs: Any) -> None:
        provider = kwargs.get("tracer_provider")
        tracer = trace.get_tracer(__name__, __version__, tracer_provider=provider)
        self._middleware = TracingMiddleware(tracer, provider)
        add_everywhere(self._middleware)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._middleware is not None:
            remove_everywhere(self._middleware)
            self._middleware = None
