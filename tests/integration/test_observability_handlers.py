"""Every observability integration in the three real serverless handlers at once: the Lambda
handler fed SQS events from moto SQS, the Cloud Functions handler fed Pub/Sub push CloudEvents
of messages pulled from the emulator, the Azure Functions handler fed
``azure.functions.ServiceBusMessage`` objects of messages received from the Service Bus test
endpoint (each as ``tests.integration.*``'s handler tests build them). Each runs one task that
succeeds and one that fails for good: the consumer span continues the producer's trace, the
batch's metric line counts both, the task's JSON log line has its ids, Sentry gets one event and
the error hook one report, for the failure only and without its arguments."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from cloudq import App, State
from cloudq.contrib.serverless_metrics import ServerlessMetrics
from cloudq.result import AsyncResult
from cloudq.testing import wait_for
from tests.fixtures.pubsub_emulator import GCP_PROJECT
from tests.observability import (
    CARD,
    ORDER,
    Observed,
    add_tasks,
    check_logs_sentry_and_reports,
    observing,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

Run = Callable[[App, list[AsyncResult]], None]


def run_lambda(app: App, results: list[AsyncResult]) -> None:
    from cloudq_sqs.lambda_handler import lambda_handler
    from cloudq_sqs.lambda_local import LocalEventSource

    source = LocalEventSource(app, lambda_handler(app), ["default"], timeout_seconds=30)
    wait_for(
        lambda: (
            source.poll_once("default", wait_seconds=1) >= 0 and all(r.ready() for r in results)
        ),
        timeout=20,
        interval=0,
        message="the batch run by the Lambda handler",
    )


def push_event(broker: Any, received: Any) -> Any:
    """The CloudEvent functions-framework makes of a Pub/Sub push of ``received``."""
    from cloudevents.http import CloudEvent

    message = received.message
    published = message.publish_time.isoformat().replace("+00:00", "Z")
    data: dict[str, Any] = {
        "message": {
            "data": base64.b64encode(message.data).decode(),
            "attributes": dict(message.attributes),
            "messageId": message.message_id,
            "publishTime": published,
        },
        "subscription": broker.subscription_path("default"),
    }
    if received.delivery_attempt:
        data["deliveryAttempt"] = received.delivery_attempt
    attributes = {
        "id": message.message_id,
        "source": f"//pubsub.googleapis.com/{broker.topic_path('default')}",
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "time": published,
    }
    return CloudEvent(attributes, data)


def run_cloud_function(app: App, results: list[AsyncResult]) -> None:
    from cloudq_pubsub.functions import cloud_function

    handler = cloud_function(app)
    broker = app.broker
    subscription = broker.subscription_path("default")  # type: ignore[attr-defined]
    pulled: list[Any] = []

    def pull() -> bool:
        response = broker.subscriber.pull(  # type: ignore[attr-defined]
            request={"subscription": subscription, "max_messages": 10}, timeout=5
        )
        pulled.extend(response.received_messages)
        return len(pulled) >= len(results)

    wait_for(pull, timeout=20, interval=0, message="the pushed messages")
    for received in pulled:
        handler(push_event(broker, received))  # returned: the push is acknowledged
    broker.subscriber.acknowledge(  # type: ignore[attr-defined]
        request={"subscription": subscription, "ack_ids": [r.ack_id for r in pulled]}
    )


def run_azure_function(app: App, results: list[AsyncResult]) -> None:
    from cloudq_servicebus.functions import functions_handler
    from tests.integration.servicebus.test_servicebus_adapter import _as_trigger, _receive_raw

    connection = os.environ["CLOUDQ_SERVICEBUS_CONNECTION"]  # set by servicebus_env
    receiver, messages = _receive_raw(app, connection, len(results))
    functions_handler(app, queue="default")([_as_trigger(m) for m in messages])
    for m in messages:  # the host completes a batch whose function returned
        receiver.complete_message(m)
    receiver.close()


# platform: (the fixture its broker needs, its broker URL, messaging.system, the driver)
PLATFORMS: dict[str, tuple[str, str, str, Run]] = {
    "lambda": ("sqs_env", "sqs://?prefix={name}-", "aws_sqs", run_lambda),
    "cloud-functions": (
        "pubsub_env",
        f"pubsub://{GCP_PROJECT}?prefix={{name}}-",
        "gcp_pubsub",
        run_cloud_function,
    ),
    "azure-functions": (
        "servicebus_env",
        "servicebus://?prefix={name}-",
        "servicebus",
        run_azure_function,
    ),
}


@pytest.fixture
def observed() -> Iterator[Observed]:
    with observing() as found:
        yield found


@pytest.fixture(params=list(PLATFORMS))
def platform(request: pytest.FixtureRequest, observed: Observed) -> Iterator[tuple[str, App]]:
    fixture, url, _system, _run = PLATFORMS[request.param]
    request.getfixturevalue(fixture)
    name = f"o{uuid.uuid4().hex[:10]}"
    app = App("obs", broker=url.format(name=name), backend=f"memory://{name}")
    observed.watch(add_tasks(app), ServerlessMetrics(stream=observed.metrics))
    app.ensure_queue("default")
    yield request.param, app
    app.close()


def outcome_counts(platform: str, lines: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """``(task, outcome) -> count`` summed over a handler's metric lines (EMF on Lambda, one
    structured line per batch on the Functions platforms)."""
    counts: dict[tuple[str, str], int] = {}
    for line in lines:
        if platform == "lambda":
            groups = [
                (line["task"], name.removeprefix("tasks_"), n)
                for name, n in line.items()
                if name.startswith("tasks_")
            ]
        else:
            groups = [
                (g["task"], outcome, n)
                for g in line["cloudq_metrics"]
                for outcome, n in g["tasks"].items()
            ]
        for task, outcome, n in groups:
            counts[task, outcome] = counts.get((task, outcome), 0) + n
    return counts


def test_every_integration_observes_the_handler(
    platform: tuple[str, App], observed: Observed
) -> None:
    name, app = platform
    system, run = PLATFORMS[name][2], PLATFORMS[name][3]
    with observed.provider.get_tracer("test").start_as_current_span("request"):
        charged = app.tasks["obs.charge"].delay(ORDER)
        declined = app.tasks["obs.decline"].delay(CARD)
    run(app, [charged, declined])
    assert charged.get(timeout=5) == ORDER
    assert declined.state == State.FAILURE

    # Spans: each run is the child of its send, in the request's trace.
    for task in ("obs.charge", "obs.decline"):
        [send], [process] = observed.spans(f"send {task}"), observed.spans(f"process {task}")
        assert process.parent is not None and send.context is not None
        assert process.parent.span_id == send.context.span_id
        assert process.attributes is not None
        assert process.attributes["messaging.system"] == system
    [failed] = observed.spans("process obs.decline")
    assert failed.status.status_code is StatusCode.ERROR
    assert len({s.context.trace_id for s in observed.exporter.get_finished_spans()}) == 1

    # The metric lines, written once the batch was done.
    counts = outcome_counts(name, observed.metric_lines())
    assert counts == {("obs.charge", "success"): 1, ("obs.decline", "failure"): 1}

    check_logs_sentry_and_reports(observed, charged.id, declined.id)
    assert len(observed.reports) == 1, "one error report for the final failure"
