"""Celery 5 with kombu's SQS transport: ``celery worker -c 4 --pool threads``.

kombu reads ``AWS_ENDPOINT_URL`` (moto); it needs ``region`` and ``is_secure=False``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from celery import Celery

from bench.contenders.common import queue, record, region

app = Celery("bench", broker="sqs://")
app.conf.update(
    broker_transport_options={"region": region(), "is_secure": False},
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
        del batch  # Celery has no batched send: one SendMessage per delay()

    def send(self, t0s: list[float]) -> None:
        for t0 in t0s:
            work.delay(t0)


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
