"""cloudq: ``cloudq -A bench.contenders.cloudq_app worker -Q <queue> -c 4``.

The broker is ``$BENCH_BROKER`` (``sqs://?prefix=..``, ``pubsub://PROJECT?prefix=..``,
``servicebus://?prefix=..``) with the adapter's defaults. Producer: ``send_envelopes`` (batched:
SendMessageBatch of 10 on SQS, Publish of 10 on Pub/Sub, 20 per send on Service Bus) or
``delay()`` per task.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bench.contenders.common import queue, record
from cloudq import App

app = App("bench", broker=os.environ.get("BENCH_BROKER", "sqs://?prefix=b-"))


@app.task(name="work", queue=queue(), ignore_result=True)
def work(t0: float) -> None:
    record(t0)


class Producer:
    def __init__(self, batch: bool = True) -> None:
        app.ensure_queue(queue())
        self.batch = batch

    def send(self, t0s: list[float]) -> None:
        if self.batch:
            app.send_envelopes([work.envelope((t0,), {}) for t0 in t0s])
        else:
            for t0 in t0s:
                work.delay(t0)

    def close(self) -> None:
        app.close()


def worker_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("cloudq")
    cli = str(exe) if exe.exists() else shutil.which("cloudq") or "cloudq"
    return [cli, "-A", "bench.contenders.cloudq_app", "worker", "-Q", queue(), "-c", "4"]
