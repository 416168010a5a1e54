"""A task raising a BaseException (SystemExit, KeyboardInterrupt, a custom subclass) in a
serverless handler: it never escapes the handler and never costs the other records their
outcome (issue 26, finding 3). Lambda on moto SQS, Azure Functions on the Service Bus test
endpoint, Cloud Functions on the Pub/Sub emulator.

What is asserted is what the handler guarantees whatever ``execute()`` makes of the exception
(a raise today, a task failure once it treats a BaseException as one): the other records
succeed and are reported so, and the interrupted one is not lost.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cloudq import App, State
from cloudq.envelope import Envelope
from cloudq.testing import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Custom(BaseException):
    """A BaseException of the app's own."""


KINDS: dict[str, Callable[[], BaseException]] = {
    "system_exit": lambda: SystemExit(3),
    "keyboard_interrupt": KeyboardInterrupt,
    "custom": lambda: Custom("custom base exception"),
}


def make_app(broker: str) -> App:
    app = App(
        "interrupts",
        broker=broker,
        backend=f"memory://{uuid.uuid4().hex}",
        queue_max_receive_count=5,
    )

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x * 2

    @app.task(name="boom")
    def boom(kind: str) -> None:
        raise KINDS[kind]()

    app.ensure_queue("default")
    return app


def three(app: App, kind: str) -> tuple[Envelope, Envelope, Envelope]:
    """ok(1), boom(kind), ok(2): the interrupted record sits between two good ones."""
    return (
        app.tasks["ok"].envelope((1,), {}),
        app.tasks["boom"].envelope((kind,), {}),
        app.tasks["ok"].envelope((2,), {}),
    )


def must_not_escape(run: Callable[[], Any]) -> Any:
    """``run()``; a BaseException out of it fails the test (instead of ending pytest)."""
    try:
        return run()
    except Exception:
        raise
    except BaseException as exc:
        pytest.fail(f"{type(exc).__name__} escaped the handler: {exc!r}")


def in_order(
    items: list[Any], envelopes: tuple[Envelope, ...], body: Callable[[Any], str]
) -> list[Any]:
    return sorted(items, key=lambda m: next(i for i, e in enumerate(envelopes) if e.id in body(m)))


# --- AWS Lambda ---------------------------------------------------------------------------------
@pytest.fixture
def sqs_app(sqs_env: str) -> Iterator[App]:
    app = make_app(f"sqs://?prefix=x{uuid.uuid4().hex[:10]}-")
    yield app
    app.close()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_lambda_handler_keeps_the_other_records(sqs_app: App, kind: str) -> None:
    from cloudq.adapters.base import OutgoingMessage
    from cloudq_sqs.lambda_handler import lambda_handler
    from cloudq_sqs.lambda_local import LocalContext, _record

    app = sqs_app
    envelopes = three(app, kind)
    app.broker.send("default", [OutgoingMessage(e.encode()) for e in envelopes])
    client, url = app.broker.client, app.broker.queue_url("default")  # type: ignore[attr-defined]
    got: list[dict[str, Any]] = []
    wait_for(
        lambda: (
            got.extend(
                client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            )
            or len(got) >= 3
        ),
        timeout=10,
        interval=0,
        message="three records",
    )
    arn = app.broker.queue_arn("default")  # type: ignore[attr-defined]
    records = [_record(m, arn, "us-east-1") for m in in_order(got, envelopes, lambda m: m["Body"])]
    handler = lambda_handler(app)
    response = must_not_escape(lambda: handler({"Records": records}, LocalContext("f", 30)))

    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    good = {records[0]["messageId"], records[2]["messageId"]}
    assert not failed & good, "the records that succeeded must not run again"
    assert app.AsyncResult(envelopes[0].id).get(timeout=1) == 2
    assert app.AsyncResult(envelopes[2].id).get(timeout=1) == 4
    # Not lost: reported for redelivery, or (execute's own decision) retried or dead-lettered.
    interrupted = app.AsyncResult(envelopes[1].id)
    assert records[1]["messageId"] in failed or interrupted.state in (State.RETRY, State.FAILURE)


# --- Azure Functions ------------------------------------------------------------------------------
@pytest.fixture
def servicebus_app(servicebus_env: Any) -> Iterator[App]:
    app = make_app(f"servicebus://?prefix=x{uuid.uuid4().hex[:10]}-")
    yield app
    app.close()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_functions_handler_keeps_the_other_messages(
    servicebus_app: App, servicebus_env: Any, kind: str
) -> None:
    from cloudq.adapters.base import OutgoingMessage
    from cloudq_servicebus.functions import functions_handler
    from tests.integration.servicebus.test_servicebus_adapter import _as_trigger, _receive_raw

    app = servicebus_app
    envelopes = three(app, kind)
    app.broker.send("default", [OutgoingMessage(e.encode()) for e in envelopes])
    receiver, got = _receive_raw(app, servicebus_env.connection, 3)
    messages = in_order(got, envelopes, lambda m: b"".join(m.body).decode())
    handler = functions_handler(app, queue="default")
    try:
        must_not_escape(lambda: handler([_as_trigger(m) for m in messages]))
        for m in messages:  # the function returned: the host completes the batch
            receiver.complete_message(m)
        assert app.AsyncResult(envelopes[0].id).get(timeout=1) == 2
        assert app.AsyncResult(envelopes[2].id).get(timeout=1) == 4
        # Not lost: a copy comes back on the queue, or it was dead-lettered.
        back: list[Any] = []
        wait_for(
            lambda: (
                back.extend(app.broker.receive("default", 10, 1, 30))
                or back.extend(app.broker.receive("default-dlq", 10, 0, 30))
                or back
            ),
            timeout=15,
            interval=0,
            message="the interrupted message, back or dead-lettered",
        )
        assert [envelopes[1].id in d.body.decode() for d in back] == [True]
        app.broker.ack(back)
    finally:
        receiver.close()


# --- Google Cloud Functions -----------------------------------------------------------------------
@pytest.fixture
def pubsub_app(pubsub_env: str) -> Iterator[App]:
    from tests.fixtures.pubsub_emulator import GCP_PROJECT

    app = make_app(f"pubsub://{GCP_PROJECT}?prefix=x{uuid.uuid4().hex[:10]}-")
    yield app
    app.close()


def cloud_event(app: App, envelope: Envelope) -> dict[str, Any]:
    """The CloudEvent Eventarc hands a function for one message of the queue's topic."""
    topic = app.broker.topic_path("default")  # type: ignore[attr-defined]
    return {
        "id": uuid.uuid4().hex,
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": f"//pubsub.googleapis.com/{topic}",
        "data": {
            "message": {
                "data": base64.b64encode(envelope.encode()).decode(),
                "messageId": uuid.uuid4().hex,
                "publishTime": datetime.now(UTC).isoformat(),
                "attributes": {},
            },
            "subscription": topic.replace("/topics/", "/subscriptions/"),
        },
    }


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cloud_function_turns_it_into_an_ordinary_error(pubsub_app: App, kind: str) -> None:
    from cloudq_pubsub.functions import process_event

    app = pubsub_app
    first, interrupted, last = three(app, kind)
    must_not_escape(lambda: process_event(app, cloud_event(app, first)))
    # An ordinary error is fine: the push is nacked and Pub/Sub redelivers it.
    with contextlib.suppress(Exception):
        must_not_escape(lambda: process_event(app, cloud_event(app, interrupted)))
    must_not_escape(lambda: process_event(app, cloud_event(app, last)))
    assert app.AsyncResult(first.id).get(timeout=1) == 2
    assert app.AsyncResult(last.id).get(timeout=1) == 4
