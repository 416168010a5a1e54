"""The same misuse raises the same error type in every serverless handler (``cloudq.serverless``
has the rules): a wrong broker and a bad time limit are ``ConfigurationError``, an event of
another platform or shape ``MalformedEvent`` (before any record runs), a record of another
app's queue ``ForeignQueue``.

No cloud: each handler gets its provider's broker class doing a memory broker's I/O (the fuzz
module's apps).
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("boto3")
pytest.importorskip("google.pubsub_v1")
pytest.importorskip("azure.functions")
pytest.importorskip("functions_framework")

from azure.functions.servicebus import ServiceBusMessage

from cloudq import App
from cloudq.errors import ConfigurationError, ForeignQueue, MalformedEvent
from cloudq_pubsub.functions import cloud_function
from cloudq_pubsub.functions import process_event as pubsub_event
from cloudq_servicebus.functions import functions_handler
from cloudq_sqs.lambda_handler import lambda_handler
from tests.unit.test_handler_fuzz import PREFIX, PUBSUB_APP, SERVICEBUS_APP, SQS_APP

Call = Callable[[App, Any], Any]
HANDLERS: dict[str, tuple[App, Call]] = {
    "lambda": (SQS_APP, lambda app, event: lambda_handler(app)(event, None)),
    "cloud-functions": (PUBSUB_APP, pubsub_event),
    "azure-functions": (SERVICEBUS_APP, lambda app, event: functions_handler(app, "q")(event)),
}


def envelope_of(app: App) -> Any:
    return app.tasks["ok"].envelope([1], {})


def sqs_event(app: App, queue: str = f"{PREFIX}default") -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": "m-1",
                "receiptHandle": "h-1",
                "body": envelope_of(app).encode().decode(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSourceARN": f"arn:aws:sqs:eu-west-1:123456789012:{queue}",
            }
        ]
    }


def cloud_event(app: App, topic: str = f"{PREFIX}default") -> dict[str, Any]:
    return {
        "id": "e-1",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": f"//pubsub.googleapis.com/projects/fuzz/topics/{topic}",
        "data": {
            "message": {"data": base64.b64encode(envelope_of(app).encode()).decode(), "id": "p"}
        },
    }


def servicebus_message(app: App) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=envelope_of(app).encode(),
        message_id="s-1",
        delivery_count=1,
        application_properties={},
        user_properties={},
    )


OTHER_PLATFORMS: dict[str, Callable[[App], Any]] = {
    "an SQS event": sqs_event,
    "a Pub/Sub CloudEvent": cloud_event,
    "a Service Bus message": servicebus_message,
    "an EventBridge event": lambda app: {"source": "aws.scheduler", "detail": {}},
    "a string": lambda app: "event",
}
OWN_EVENT = {
    "lambda": "an SQS event",
    "cloud-functions": "a Pub/Sub CloudEvent",
    "azure-functions": "a Service Bus message",
}


@pytest.mark.parametrize("handler", list(HANDLERS))
def test_a_wrong_broker_is_a_configuration_error(handler: str) -> None:
    memory = App("m", broker=f"memory://{uuid.uuid4().hex}")
    _, call = HANDLERS[handler]
    with pytest.raises(ConfigurationError, match=r"needs a \w+:// broker") as raised:
        call(memory, {})
    assert type(raised.value) is ConfigurationError


@pytest.mark.parametrize(
    ("handler", "event"),
    [(h, e) for h in HANDLERS for e in OTHER_PLATFORMS if OWN_EVENT[h] != e],
)
def test_an_event_of_another_platform_or_shape_is_malformed_before_any_record_runs(
    handler: str, event: str
) -> None:
    app, call = HANDLERS[handler]
    given = OTHER_PLATFORMS[event](app)
    with pytest.raises(MalformedEvent):
        call(app, given if event != "a Service Bus message" else [given])
    assert app.backend is not None and app.backend.get(envelope_of(app).id) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda limit: functions_handler(SERVICEBUS_APP, "q", time_limit=limit),
        lambda limit: cloud_function(PUBSUB_APP, timeout_seconds=limit),
    ],
    ids=["azure-functions", "cloud-functions"],
)
@pytest.mark.parametrize("limit", [0, -5, "30", float("nan"), float("inf"), True])
def test_a_bad_time_limit_is_a_configuration_error_when_the_handler_is_made(
    make: Callable[[Any], Any], limit: Any
) -> None:
    with pytest.raises(ConfigurationError, match="number of seconds") as raised:
        make(limit)
    assert type(raised.value) is ConfigurationError


def test_a_record_of_another_apps_queue_is_foreign_on_lambda_and_pubsub(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ForeignQueue, match="not this app's broker's"):
        pubsub_event(PUBSUB_APP, cloud_event(PUBSUB_APP, "someone-else-default"))
    with caplog.at_level(logging.WARNING, logger="cloudq"):
        response = lambda_handler(SQS_APP)(sqs_event(SQS_APP, "someone-else-default"), None)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    [refused] = [
        r
        for r in caplog.records
        if r.name == "cloudq.lambda" and "not this app's broker's" in r.getMessage()
    ]
    assert refused.exc_info is None, "a configuration mistake, not a traceback"


def test_a_service_bus_queue_the_broker_would_never_name_is_a_configuration_error() -> None:
    for queue in ("", "bad name!"):
        with pytest.raises(ConfigurationError) as raised:
            functions_handler(SERVICEBUS_APP, queue)([servicebus_message(SERVICEBUS_APP)])
        assert type(raised.value) is ConfigurationError
