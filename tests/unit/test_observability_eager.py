"""Every observability integration in eager mode, ``apply()`` and ``task_always_eager``, on
the memory broker: the run's span is a child of the span current at the call, Prometheus
counts it, its JSON log line has its ids, Sentry gets one event for the failure. Error reports
follow dead letters, which eager mode has none of: the caller gets the failure itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.trace import StatusCode

from cloudq import App, State
from cloudq.contrib.prometheus import PrometheusMetrics
from cloudq.result import AsyncResult, EagerResult
from tests.observability import (
    CARD,
    ORDER,
    Observed,
    add_tasks,
    check_logs_sentry_and_reports,
    observing,
)


@pytest.fixture
def observed() -> Iterator[Observed]:
    with observing() as found:
        yield found


@pytest.mark.parametrize("call", ["apply", "task_always_eager"])
def test_every_integration_observes_eager_runs(observed: Observed, call: str) -> None:
    app = App("obs", broker=f"memory://{uuid.uuid4().hex}")
    metrics = PrometheusMetrics()
    observed.watch(add_tasks(app), metrics)
    charge, decline = app.tasks["obs.charge"], app.tasks["obs.decline"]
    with observed.provider.get_tracer("test").start_as_current_span("request") as request:
        charged: AsyncResult | EagerResult
        declined: AsyncResult | EagerResult
        if call == "apply":
            charged, declined = charge.apply(args=(ORDER,)), decline.apply(args=(CARD,))
        else:
            app.conf.task_always_eager = True
            charged, declined = charge.delay(ORDER), decline.delay(CARD)
    assert charged.get() == ORDER and declined.state == State.FAILURE

    for task in ("obs.charge", "obs.decline"):
        [run] = observed.spans(f"process {task}")
        assert run.parent is not None and run.parent.span_id == request.get_span_context().span_id
    [failed] = observed.spans("process obs.decline")
    assert failed.status.status_code is StatusCode.ERROR

    assert metrics.registry is not None
    for task, outcome in (("obs.charge", "success"), ("obs.decline", "failure")):
        labels = {"task": task, "queue": "default", "outcome": outcome}
        assert metrics.registry.get_sample_value("cloudq_tasks_total", labels) == 1

    check_logs_sentry_and_reports(observed, charged.id, declined.id)
    assert observed.reports == [], "no dead letter in eager mode, so no error report"
