"""Celery 5: ``celery worker -c 4 --pool threads`` on kombu's SQS or gcpubsub transport.

``$BENCH_PROVIDER`` picks the transport:

- ``sqs``: kombu reads ``AWS_ENDPOINT_URL`` (moto); it needs ``region`` and ``is_secure=False``;
- ``pubsub``: ``gcpubsub://projects/PROJECT``; the SDK clients kombu makes read
  ``PUBSUB_EMULATOR_HOST``. kombu publishes through the SDK's batching ``PublisherClient`` and
  does not wait for the publish futures, so the producer here collects them (a subclass that
  only records each future) and waits for them after its ``delay()`` calls: the publish is then
  done, and counted, inside the send window as for every other contender.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from celery import Celery

from bench.contenders.common import queue, record, region

PROVIDER = os.environ.get("BENCH_PROVIDER", "sqs")
PENDING: list[Future[Any]] = []

if PROVIDER == "pubsub":
    from google.cloud.pubsub_v1 import PublisherClient
    from kombu.transport import gcpubsub

    class _TrackedPublisher(PublisherClient):  # type: ignore[misc]
        def publish(self, *args: Any, **kwargs: Any) -> Any:
            future = super().publish(*args, **kwargs)
            PENDING.append(future)
            return future

    gcpubsub.PublisherClient = _TrackedPublisher
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "cloudq-bench")
    app = Celery("bench", broker=f"gcpubsub://projects/{project}")
else:
    app = Celery("bench", broker="sqs://")
    app.conf.broker_transport_options = {"region": region(), "is_secure": False}
app.conf.update(
    task_default_queue=queue(),
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="work")
def work(t0: float) -> None:
    record(t0)


class Producer:
    def __init__(self, batch: bool = False) -> None:
        del batch  # Celery has no batched send: one publish per delay()

    def send(self, t0s: list[float]) -> None:
        for t0 in t0s:
            work.delay(t0)
        while PENDING:
            PENDING.pop().result()


def worker_cmd() -> list[str]:
    return [
        str(Path(sys.executable).with_name("celery")),
        "-A",
        "bench.contenders.celery_app",
        "worker",
        "-Q",
        queue(),
        "-c",
        "4",
        "--pool",
        "threads",
        "-l",
        "warning",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
