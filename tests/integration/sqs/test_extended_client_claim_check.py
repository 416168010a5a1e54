"""Claim checks in the SQS Extended Client's format, on moto SQS + S3, both ways: a consumer
written with AWS's Python extended client reads cloudq's large message, and a cloudq worker
runs a large message that the extended client sent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.envelope import decode
from cloudq.testing import start_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PEER = Path(__file__).with_name("extended_client_peer.py")
BIG = 300_000
"""Over SQS's 256 KiB: the body must travel through S3."""


@pytest.fixture
def peer(sqs_env: str) -> Any:
    # Not imported here: importing it patches boto3.Session for the whole process.
    if importlib.util.find_spec("sqs_extended_client") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("amazon-sqs-extended-client is not installed (dev group)")
        pytest.skip("amazon-sqs-extended-client is not installed (uv sync --group dev)")

    def run(*args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, str(PEER), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def make_app(bucket: str) -> App:
    app = App(
        "ext",
        broker=f"sqs://?prefix=x{uuid.uuid4().hex[:8]}-",
        backend=f"memory://{uuid.uuid4().hex}",
        claim_check_url=f"s3://{bucket}?create=1",
        claim_check_format="sqs-extended",
    )
    return app


def queue_url(app: App) -> str:
    import boto3  # type: ignore[import-untyped, unused-ignore]

    app.ensure_queue("default")
    prefix = app.broker.prefix  # type: ignore[attr-defined]
    sqs = boto3.client("sqs", region_name="us-east-1")
    return str(sqs.get_queue_url(QueueName=f"{prefix}default")["QueueUrl"])


def test_extended_client_reads_cloudqs_large_message(peer: Any) -> None:
    bucket = f"cq-ext-{uuid.uuid4().hex[:8]}"
    app = make_app(bucket)
    app.task(name="ingest")(len)
    url = queue_url(app)
    app.tasks["ingest"].delay("x" * BIG)

    (body,) = json.loads(peer("receive", url, bucket))
    envelope = decode(body.encode())  # the extended client fetched cloudq's envelope from S3
    assert envelope.task == "ingest" and envelope.args == ["x" * BIG]


def test_cloudq_worker_runs_a_large_message_the_extended_client_sent(peer: Any) -> None:
    import boto3

    bucket = f"cq-ext-{uuid.uuid4().hex[:8]}"
    app = make_app(bucket)
    seen: list[int] = []
    app.task(name="ingest")(lambda blob: seen.append(len(blob)))
    url = queue_url(app)
    assert app.claim_checks is not None  # opening the store creates the bucket
    body = app.tasks["ingest"].envelope(("y" * BIG,), {}).encode().decode()

    peer("send", url, bucket, stdin=body)
    with start_worker(app, ["default"], poll_seconds=1):
        wait_for(lambda: seen == [BIG], timeout=30, message="the worker ran the task")
    s3 = boto3.client("s3", region_name="us-east-1")
    gone = lambda: s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # noqa: E731
    wait_for(gone, timeout=10, message="the parked body was deleted after the ack")
