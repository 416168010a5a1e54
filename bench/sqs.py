"""SQS on a moto server: raw boto3, cloudq, Celery + kombu SQS, dramatiq + dramatiq_sqs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from bench.measure import Contender, Provider, environment

CONTENDERS = (
    Contender("raw-batch", "raw boto3 (batch 10)", "raw_boto3", True, ("boto3",)),
    Contender("raw-single", "raw boto3 (1 SendMessage/task)", "raw_boto3", False, ("boto3",)),
    Contender("cloudq-batch", "cloudq (send_envelopes)", "cloudq_app", True, ("cloudq_sqs",)),
    Contender("cloudq-delay", "cloudq (delay())", "cloudq_app", False, ("cloudq_sqs",)),
    Contender("celery", "Celery + kombu SQS (-c 4 threads)", "celery_app", False, ("celery",)),
    Contender(
        "dramatiq", "dramatiq + dramatiq_sqs (1x4)", "dramatiq_app", False, ("dramatiq_sqs",)
    ),
)


@contextlib.contextmanager
def endpoint(workdir: Path) -> Iterator[str]:
    """moto's server on a free loopback port (the test fixture's helper), boto3 pointed at it."""
    from tests.fixtures.moto_server import _start
    from tests.fixtures.servers import stop_process

    proc, url = _start(workdir)
    missing = str(Path(os.devnull).with_name("cloudq-no-aws-config"))
    try:
        with environment(
            AWS_ENDPOINT_URL=url,
            AWS_ENDPOINT_URL_SQS=None,
            AWS_PROFILE=None,
            AWS_SESSION_TOKEN=None,
            AWS_CONFIG_FILE=missing,  # the developer's ~/.aws stays out of the run
            AWS_SHARED_CREDENTIALS_FILE=missing,
            AWS_ACCESS_KEY_ID="x",
            AWS_SECRET_ACCESS_KEY="x",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            CLOUDQ_SQS_PREFIX=None,
        ):
            yield "moto server (`python -m moto.server`)"
    finally:
        stop_process(proc)


PROVIDER = Provider(
    key="sqs",
    title="SQS (moto server)",
    contenders=CONTENDERS,
    endpoint=endpoint,
    cloudq_url="sqs://?prefix={prefix}",
    raws=("raw-batch",),
    raw_single="raw-single",
    cloudq_batch="cloudq-batch",
    cloudq_delay="cloudq-delay",
    peers=("celery", "dramatiq"),
    dists=(
        "boto3",
        "botocore",
        "moto",
        "cloudqueue-tasks-sqs",
        "celery",
        "kombu",
        "dramatiq",
        "dramatiq-sqs",
    ),
)
