"""The Lambda handler end to end: real SQS messages on moto, fed by the local event source."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from cloudq import App, State
from cloudq.adapters.base import OutgoingMessage
from cloudq.testing import wait_for
from cloudq_sqs.lambda_handler import lambda_handler
from cloudq_sqs.lambda_local import LocalContext, LocalEventSource

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def app(sqs_env: str) -> App:
    name = uuid.uuid4().hex[:10]
    app = App(
        "lambda",
        broker=f"sqs://?prefix=l{name}-",
        backend=f"memory://{name}",
        queue_lease_seconds=2,
        queue_max_receive_count=5,
    )
    calls: dict[str, int] = {}

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x * 2

    @app.task(name="fails")
    def fails() -> None:
        raise ValueError("poison")

    @app.task(name="flaky", autoretry_for=(ConnectionError,), retry_backoff=1, max_retries=2)
    def flaky(key: str) -> str:
        calls[key] = calls.get(key, 0) + 1
        if calls[key] == 1:
            raise ConnectionError("once")
        return f"ok after {calls[key]}"

    app.ensure_queue("default")
    return app


def drain(source: LocalEventSource, until: Any, timeout: float = 20) -> None:
    wait_for(
        lambda: source.poll_once("default", wait_seconds=1) >= 0 and until(),
        timeout=timeout,
        interval=0,
        message="handler results",
    )


def test_handler_runs_retries_and_dead_letters(app: App) -> None:
    source = LocalEventSource(app, lambda_handler(app), ["default"], timeout_seconds=30)
    ok = app.tasks["ok"].delay(21)
    flaky = app.tasks["flaky"].delay("k")
    fails = app.tasks["fails"].delay()
    drain(source, lambda: ok.ready() and flaky.ready() and fails.ready())
    assert ok.get(timeout=1) == 42
    assert flaky.get(timeout=1) == "ok after 2"
    assert fails.state == State.FAILURE
    [dead] = app.broker.receive("default-dlq", 10, 1, 30)
    assert "ValueError: poison" in dead.attributes["cloudq-dead-letter-reason"]
    wait_for(
        lambda: app.broker.stats("default").in_flight == 0,
        timeout=5,
        message="every record deleted",
    )
    stats = app.broker.stats("default")
    assert (stats.visible, stats.delayed) == (0, 0)
    assert source.stats.failed == 0


def test_unapplicable_outcome_is_a_batch_item_failure(app: App) -> None:
    """A retry whose copy cannot be sent is reported; the other record of the batch is not."""
    app.conf.create_missing_queues = False
    good = app.tasks["ok"].envelope((1,), {})
    # This copy of "flaky" names a queue that does not exist: its retry send must fail.
    broken = app.tasks["flaky"].envelope(("b",), {}, queue="ghost")
    app.broker.send("default", [OutgoingMessage(good.encode()), OutgoingMessage(broken.encode())])
    seen: list[dict[str, Any]] = []
    handler = lambda_handler(app)

    def spy(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = handler(event, context)
        seen.append({"records": len(event["Records"]), **response})
        return response

    source = LocalEventSource(app, spy, ["default"])
    wait_for(
        lambda: source.poll_once("default", wait_seconds=1) and source.stats.records == 2,
        timeout=10,
        interval=0,
        message="both records handled",
    )
    assert source.stats.failed == 1 and source.stats.deleted == 1
    failures = [f for s in seen for f in s["batchItemFailures"]]
    assert len(failures) == 1
    assert app.AsyncResult(good.id).get(timeout=1) == 2
    # The failed record is still on the queue and comes back after its visibility timeout.
    [back] = app.broker.receive("default", 1, 5, 30)
    assert back.receive_count == 2 and b'"ghost"' in back.body


def test_records_are_not_started_without_time_left(app: App) -> None:
    app.tasks["ok"].delay(1)
    [message] = app.broker.client.receive_message(
        QueueUrl=app.broker.queue_url("default"),
        AttributeNames=["All"],  # type: ignore[attr-defined]
        MessageAttributeNames=["All"],
        WaitTimeSeconds=2,
    )["Messages"]
    from cloudq_sqs.lambda_local import _record

    event = {"Records": [_record(message, app.broker.queue_arn("default"), "us-east-1")]}  # type: ignore[attr-defined]
    response = lambda_handler(app)(event, LocalContext("f", timeout_seconds=0.5))
    assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}


def test_malformed_record_body_is_dead_lettered(app: App) -> None:
    app.broker.send("default", [OutgoingMessage(b"not an envelope")])
    source = LocalEventSource(app, lambda_handler(app), ["default"])
    wait_for(
        lambda: source.poll_once("default", wait_seconds=1) > 0,
        timeout=10,
        interval=0,
        message="record handled",
    )
    [dead] = app.broker.receive("default-dlq", 1, 2, 30)
    assert dead.body == b"not an envelope"
    assert "not JSON" in dead.attributes["cloudq-dead-letter-reason"]


def test_lambda_local_command_feeds_the_handler(
    sqs_env: str, redis_url: str, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    prefix = f"cli{uuid.uuid4().hex[:8]}-"
    env = {
        **os.environ,
        "CLOUDQ_BROKER_URL": f"sqs://?prefix={prefix}",
        "CLOUDQ_RESULT_BACKEND": f"{redis_url}?prefix={prefix}",
        "PYTHONPATH": str(ROOT),
    }
    producer = App("p", broker=env["CLOUDQ_BROKER_URL"], backend=env["CLOUDQ_RESULT_BACKEND"])
    producer.task(name="double")(lambda x: x)
    producer.ensure_queue("default")
    result = producer.tasks["double"].delay(21)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudq.cli",
            "-A",
            "tests.apps.lambda_app",
            "lambda-local",
            "-Q",
            "default",
            "--timeout",
            "10",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert result.get(timeout=20) == 42
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        out = proc.stderr.read()
        assert proc.wait(timeout=20) == 0, out
    finally:
        proc.kill()
    assert "1 invocation(s), 1 record(s), 0 failed" in out


def test_handler_reloads_revoked_ids_before_its_batch(app: App) -> None:
    """A task revoked from another process (its id only in the shared store) is acknowledged
    unrun by the next invocation: the handler reloads the ids before running its records."""
    source = LocalEventSource(app, lambda_handler(app), ["default"], timeout_seconds=30)
    doomed = app.tasks["ok"].delay(1)
    kept = app.tasks["ok"].delay(2)
    app.control.revoke(doomed.id)
    app.control.revoked.replace([])  # this process forgets: only the store knows
    drain(source, lambda: doomed.ready() and kept.ready())
    assert doomed.state == State.REVOKED
    assert kept.get(timeout=1) == 4
    assert app.broker.stats("default-dlq").visible == 0
