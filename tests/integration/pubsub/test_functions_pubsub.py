"""The Cloud Functions handler end to end: the emulator pushes the queue's subscription to
functions-framework serving ``tests.apps.pubsub_app:handler`` on loopback; results land in the
Firestore emulator. And the same server driven with the exact CloudEvent Eventarc sends."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloudq import App, State
from cloudq.envelope import decode
from cloudq_pubsub.broker import MESSAGE_ID_ATTRIBUTE, PubSubBroker
from tests.fixtures.pubsub_emulator import GCP_PROJECT, free_port
from tests.integration.pubsub.helpers import (
    PubSubStack,
    nothing_visible,
    pull_all,
)
from tests.processes import STARTUP_TIMEOUT, LoggedProcess, events, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture
def served(
    pubsub_env: str, firestore_env: str, tmp_path: Path
) -> Iterator[tuple[PubSubStack, App, LoggedProcess, int]]:
    """A producer and a functions-framework server on a free port, sharing one stack."""
    with PubSubStack(tmp_path) as stack:
        port = free_port()
        server = stack.function_server(port)
        wait_for(
            lambda: server.proc.poll() is not None or answers(f"http://127.0.0.1:{port}/"),
            STARTUP_TIMEOUT,
            "functions-framework to answer",
            stack.logs,
        )
        assert server.proc.poll() is None, server.log()
        yield stack, stack.producer(), server, port


def push_to(producer: App, queue: str, port: int) -> None:
    """Make the queue's own subscription a push subscription to the function, as the deployment
    does; the topic is in the URL path, as Eventarc's event source names it."""
    broker = producer.broker
    assert isinstance(broker, PubSubBroker)
    producer.ensure_queue(queue)
    endpoint = f"http://127.0.0.1:{port}/{broker.topic_path(queue)}"
    broker.subscriber.modify_push_config(
        subscription=broker.subscription_path(queue), push_config={"push_endpoint": endpoint}
    )


def test_emulator_push_runs_tasks_retries_defers_and_dead_letters(
    served: tuple[PubSubStack, App, LoggedProcess, int],
) -> None:
    stack, producer, server, port = served
    push_to(producer, "fn", port)
    marker = stack.tmp / "marks.log"

    sent = time.time()
    ok = producer.tasks["ps.stamp"].apply_async((str(marker), "now"), queue="fn")
    later = producer.tasks["ps.stamp"].apply_async((str(marker), "later"), countdown=3, queue="fn")
    flaky = producer.tasks["ps.flaky"].apply_async((str(marker), 1), queue="fn")
    doomed = producer.tasks["ps.doomed"].apply_async((str(marker),), queue="fn")

    assert ok.get(timeout=20) >= sent
    ran_later = later.get(timeout=30)
    assert ran_later >= sent + 3, f"ran {ran_later - sent:.2f}s after sending, before its eta"
    assert flaky.get(timeout=30) == 2
    with pytest.raises(RuntimeError, match="doomed attempt 2"):
        doomed.get(timeout=30)
    assert producer.backend is not None
    record = producer.backend.get(ok.id)
    assert record is not None and record.state == State.SUCCESS

    ran = [e[2] for e in events(marker, "ran")]
    assert sorted(ran) == ["later", "now"], "each task ran exactly once"
    flaky_attempts = [e for e in events(marker, "attempt") if e[2] in ("1", "2")]
    assert len(flaky_attempts) >= 2
    assert "DeliveryHeld" in server.log(), "the countdown was held by a failure response"

    (dead,) = wait_for(lambda: pull_all(producer, "fn-dlq", 5), 10, "the dead letter", stack.logs)
    assert decode(dead.body).id == doomed.id
    assert "doomed attempt 2" in dead.attributes["cloudq-dead-letter-reason"]
    producer.broker.ack([dead])


def eventarc_request(
    broker: PubSubBroker, queue: str, body: bytes, attributes: dict[str, str], published: datetime
) -> urllib.request.Request:
    """The binary-mode CloudEvent Eventarc posts for a Pub/Sub message (no deliveryAttempt)."""
    message_id = str(uuid.uuid4().int)[:16]
    stamp = published.isoformat().replace("+00:00", "Z")
    data = {
        "message": {
            "data": base64.b64encode(body).decode(),
            "attributes": attributes,
            "messageId": message_id,
            "publishTime": stamp,
        },
        "subscription": f"projects/{GCP_PROJECT}/subscriptions/eventarc-x-{queue}-sub-123",
    }
    headers = {
        "Content-Type": "application/json",
        "ce-id": message_id,
        "ce-source": f"//pubsub.googleapis.com/{broker.topic_path(queue)}",
        "ce-specversion": "1.0",
        "ce-type": EVENT_TYPE,
        "ce-time": stamp,
    }
    return urllib.request.Request("http://127.0.0.1/", json.dumps(data).encode(), headers)


def post(request: urllib.request.Request, port: int) -> int:
    request.full_url = f"http://127.0.0.1:{port}/"
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_eventarc_cloudevent_acks_by_returning_and_holds_by_failing(
    served: tuple[PubSubStack, App, LoggedProcess, int],
) -> None:
    stack, producer, _server, port = served
    broker = producer.broker
    assert isinstance(broker, PubSubBroker)
    producer.ensure_queue("arc")
    marker = stack.tmp / "marks.log"
    stamp = producer.tasks["ps.stamp"]
    now = datetime.now(UTC)

    def envelope_body(countdown: float | None = None) -> tuple[str, bytes]:
        eta = now + timedelta(seconds=countdown) if countdown else None
        env = stamp.envelope((str(marker), "arc"), {}, queue="arc", eta=eta)
        return env.id, env.encode()

    task_id, body = envelope_body()
    attrs = {"cloudq-task": "ps.stamp", MESSAGE_ID_ATTRIBUTE: task_id}
    assert post(eventarc_request(broker, "arc", body, attrs, now), port) == 200
    record = producer.backend.get(task_id) if producer.backend else None
    assert record is not None and record.state == State.SUCCESS
    assert [e[2] for e in events(marker, "ran")] == ["arc"]

    # Not due, first delivery: a failure response, so Pub/Sub redelivers it after its backoff.
    held_id, held = envelope_body(countdown=3600)
    attrs = {"cloudq-task": "ps.stamp", MESSAGE_ID_ATTRIBUTE: held_id}
    assert post(eventarc_request(broker, "arc", held, attrs, now), port) == 500
    assert nothing_visible(producer, "arc", wait=0.5), "a hold publishes nothing"
    # Not due, redelivered (older than a first delivery can be): re-published fresh and acked.
    old = now - timedelta(seconds=60)
    assert post(eventarc_request(broker, "arc", held, attrs, old), port) == 200
    (hop,) = pull_all(producer, "arc", 5)
    assert decode(hop.body).id == held_id and hop.receive_count == 1
    assert len(events(marker, "ran")) == 1, "the deferred task did not run"
