"""What the serverless handlers accept (issue 26, findings 3 and 11): a Lambda record that
cannot be identified makes the event invalid; a record (or a Pub/Sub CloudEvent) from a queue
that is not this app's broker's is not run; and every handler refuses a wrong broker with the
same error. Lambda on moto SQS, Cloud Functions on the Pub/Sub emulator.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import OutgoingMessage
from cloudq.envelope import Envelope
from cloudq.errors import ConfigurationError
from cloudq.testing import wait_for

REGION = "us-east-1"


def make_app(broker: str) -> App:
    app = App("records", broker=broker, backend=f"memory://{uuid.uuid4().hex}")

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x * 2

    return app


# --- Lambda -------------------------------------------------------------------------------------
@pytest.fixture
def sqs_app(sqs_env: str) -> Iterator[App]:
    app = make_app(f"sqs://?prefix=r{uuid.uuid4().hex[:10]}-")
    app.ensure_queue("default")
    yield app
    app.close()


def real_record(app: App, envelope: Envelope) -> dict[str, Any]:
    """The record Lambda would hand over for ``envelope``, received from moto SQS."""
    from cloudq_sqs.lambda_local import _record

    app.broker.send("default", [OutgoingMessage(envelope.encode())])
    client, url = app.broker.client, app.broker.queue_url("default")  # type: ignore[attr-defined]
    got: list[dict[str, Any]] = []
    wait_for(
        lambda: (
            got.extend(
                client.receive_message(
                    QueueUrl=url,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            )
            or got
        ),
        timeout=10,
        interval=0,
        message="a record",
    )
    return _record(got[0], app.broker.queue_arn("default"), REGION)  # type: ignore[attr-defined]


def forged(record: dict[str, Any], envelope: Envelope, arn: str) -> dict[str, Any]:
    """``record`` as if it came from the queue ``arn`` with ``envelope`` as its body."""
    return {
        **record,
        "messageId": uuid.uuid4().hex,
        "receiptHandle": uuid.uuid4().hex,
        "body": envelope.encode().decode(),
        "eventSourceARN": arn,
    }


@pytest.mark.integration
@pytest.mark.parametrize("message_id", ["missing", "", None, 7])
def test_a_record_without_a_message_id_makes_the_event_invalid(
    sqs_app: App, message_id: Any
) -> None:
    from cloudq_sqs.lambda_handler import lambda_handler

    good = sqs_app.tasks["ok"].envelope((1,), {})
    record = real_record(sqs_app, good)
    nameless = {**record, "receiptHandle": "other"}
    if message_id == "missing":
        del nameless["messageId"]
    else:
        nameless["messageId"] = message_id
    with pytest.raises(ConfigurationError, match="messageId"):
        lambda_handler(sqs_app)({"Records": [record, nameless]}, None)
    assert not sqs_app.AsyncResult(good.id).ready(), "no record may run in an invalid event"


@pytest.mark.integration
@pytest.mark.parametrize("where", ["prefix", "region", "service", "malformed"])
def test_a_record_from_a_foreign_queue_is_not_run(
    sqs_app: App, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    from cloudq_sqs.lambda_handler import lambda_handler

    good = sqs_app.tasks["ok"].envelope((1,), {})
    record = real_record(sqs_app, good)
    arn = record["eventSourceARN"]
    account, name = arn.split(":")[4], arn.split(":")[5]
    foreign_arn = {
        "prefix": f"arn:aws:sqs:{REGION}:{account}:someone-else-default",
        "region": f"arn:aws:sqs:eu-west-1:{account}:{name}",
        "service": f"arn:aws:sns:{REGION}:{account}:{name}",
        "malformed": name,
    }[where]
    stranger = sqs_app.tasks["ok"].envelope((2,), {})
    foreign = forged(record, stranger, foreign_arn)
    with caplog.at_level(logging.WARNING, "cloudq.lambda"):
        response = lambda_handler(sqs_app)({"Records": [foreign, record]}, None)
    assert response == {"batchItemFailures": [{"itemIdentifier": foreign["messageId"]}]}
    assert not sqs_app.AsyncResult(stranger.id).ready(), "a foreign record must not run"
    assert sqs_app.AsyncResult(good.id).get(timeout=1) == 2, "the app's own record runs"
    assert any("not this app's" in r.getMessage() for r in caplog.records)


@pytest.mark.integration
def test_lambda_local_fails_the_batch_on_an_identifier_lambda_would_refuse(sqs_app: App) -> None:
    """Lambda fails the whole batch when an itemIdentifier is empty or names no record."""
    from cloudq_sqs.lambda_local import LocalEventSource

    sqs_app.broker.send("default", [OutgoingMessage(b"a"), OutgoingMessage(b"b")])
    source = LocalEventSource(
        sqs_app, lambda event, context: {"batchItemFailures": [{"itemIdentifier": ""}]}, ["default"]
    )
    wait_for(
        lambda: source.poll_once("default", wait_seconds=1) and source.stats.records >= 2,
        timeout=10,
        interval=0,
        message="both records handed over",
    )
    assert source.stats.deleted == 0 and source.stats.failed == source.stats.records


# --- Cloud Functions ------------------------------------------------------------------------------
@pytest.fixture
def pubsub_app(pubsub_env: str) -> Iterator[App]:
    from tests.fixtures.pubsub_emulator import GCP_PROJECT

    app = make_app(f"pubsub://{GCP_PROJECT}?prefix=r{uuid.uuid4().hex[:10]}-")
    yield app
    app.close()


def cloud_event(source_topic: str, envelope: Envelope, subscription: str = "") -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": f"//pubsub.googleapis.com/{source_topic}" if source_topic else "",
        "data": {
            "message": {
                "data": base64.b64encode(envelope.encode()).decode(),
                "messageId": uuid.uuid4().hex,
                "publishTime": datetime.now(UTC).isoformat(),
            },
            "subscription": subscription,
        },
    }


@pytest.mark.integration
@pytest.mark.parametrize("where", ["prefix", "project", "subscription"])
def test_a_cloud_event_from_a_foreign_topic_is_not_run(pubsub_app: App, where: str) -> None:
    from cloudq_pubsub.functions import process_event

    broker: Any = pubsub_app.broker
    ours = broker.topic_path("default")
    stranger = pubsub_app.tasks["ok"].envelope((2,), {})
    event = {
        "prefix": cloud_event(f"projects/{broker.project}/topics/someone-else-default", stranger),
        "project": cloud_event(ours.replace(broker.project, "other-project", 1), stranger),
        "subscription": cloud_event(
            "", stranger, f"projects/{broker.project}/subscriptions/someone-else-default"
        ),
    }[where]
    with pytest.raises(ConfigurationError, match="not this app's"):
        process_event(pubsub_app, event)
    assert not pubsub_app.AsyncResult(stranger.id).ready()
    good = pubsub_app.tasks["ok"].envelope((1,), {})
    process_event(pubsub_app, cloud_event(ours, good))
    assert pubsub_app.AsyncResult(good.id).get(timeout=1) == 2


# --- one error for a wrong broker -----------------------------------------------------------------
def test_every_handler_refuses_a_wrong_broker_with_configuration_error() -> None:
    from cloudq_pubsub.functions import process_event
    from cloudq_servicebus.functions import functions_handler
    from cloudq_sqs.lambda_handler import lambda_handler
    from cloudq_sqs.lambda_local import LocalEventSource

    app = make_app(f"memory://{uuid.uuid4().hex}")
    calls = {
        "lambda": lambda: lambda_handler(app)({"Records": []}, None),
        "lambda-local": lambda: LocalEventSource(app, lambda e, c: {}, ["default"]),
        "azure functions": lambda: functions_handler(app, "default")([]),
        "cloud functions": lambda: process_event(app, {"data": {"message": {}}}),
    }
    for name, call in calls.items():
        with pytest.raises(ConfigurationError, match=r"needs a \w+:// broker") as caught:
            call()
        assert type(caught.value) is ConfigurationError, name
