"""dramatiq with dramatiq_sqs: ``dramatiq bench.contenders.dramatiq_app -p 1 -t 4``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dramatiq
from dramatiq_sqs import SQSBroker

from bench.contenders.common import queue, record, region

broker = SQSBroker(endpoint_url=os.environ.get("AWS_ENDPOINT_URL"), region_name=region())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=queue(), max_retries=0)
def work(t0: float) -> None:
    record(t0)


class Producer:
    def __init__(self, batch: bool = False) -> None:
        del batch  # dramatiq_sqs sends one SendMessage per message
        broker.declare_queue(queue())

    def send(self, t0s: list[float]) -> None:
        for t0 in t0s:
            work.send(t0)


def worker_cmd() -> list[str]:
    return [
        str(Path(sys.executable).with_name("dramatiq")),
        "bench.contenders.dramatiq_app",
        "--processes",
        "1",
        "--threads",
        "4",
        "--queues",
        queue(),
    ]
