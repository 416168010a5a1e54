"""SQS send + receive + delete: cloudq against a raw boto3 loop, on one moto server, in one run.

    uv run python bench/sqs_loop.py [--n 1000]

Reports wall time, messages/s and this process's CPU per message (moto runs in its own process,
so its CPU is not counted: the emulator is the bottleneck in wall time, the CPU column is the
client library's own cost). Queues are kept shallow (moto slows down as a queue gets deep): each
contender sends and consumes in rounds of 100 messages.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.servers import free_port, stop_process

ROUND = 100


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, n: int, fn: Callable[[int], None]) -> dict[str, float | str]:
    wall0, cpu0 = time.perf_counter(), cpu()
    for _ in range(n // ROUND):
        fn(ROUND)
    wall, used = time.perf_counter() - wall0, cpu() - cpu0
    return {"name": name, "wall": wall, "rate": n / wall, "cpu_ms": used / n * 1000}


def raw_boto3(client: object, url: str) -> Callable[[int], None]:
    def run(count: int) -> None:
        for _ in range(count // 10):
            client.send_message_batch(
                QueueUrl=url,
                Entries=[  # type: ignore[attr-defined]
                    {"Id": str(i), "MessageBody": '{"task":"noop","args":[]}'} for i in range(10)
                ],
            )
        got = 0
        while got < count:
            messages = client.receive_message(  # type: ignore[attr-defined]
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
            ).get("Messages", [])
            if messages:
                client.delete_message_batch(
                    QueueUrl=url,
                    Entries=[  # type: ignore[attr-defined]
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
            got += len(messages)

    return run


def cloudq_loop(queue: str) -> Callable[[int], None]:
    from cloudq import App
    from cloudq.testing import start_worker, wait_for

    app = App("bench", broker=f"sqs://?prefix=b{uuid.uuid4().hex[:8]}-", queue_lease_seconds=30)
    done = [0]

    @app.task(name="noop", queue=queue, ignore_result=True)
    def noop() -> None:
        done[0] += 1

    app.ensure_queue(queue)

    def run(count: int) -> None:
        target = done[0] + count
        envelopes = [noop.envelope((), {}) for _ in range(count)]
        app.send_envelopes(envelopes)  # batched: SendMessageBatch of 10
        wait_for(lambda: done[0] >= target, timeout=120, interval=0.005)

    worker = start_worker(app, [queue], concurrency=4, poll_seconds=3)
    worker.__enter__()
    run.close = lambda: worker.__exit__(None, None, None)  # type: ignore[attr-defined]
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    n = parser.parse_args().n // ROUND * ROUND
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_REGION="us-east-1",
    )
    try:
        import boto3

        client = boto3.client("sqs", region_name="us-east-1")
        deadline = time.monotonic() + 30
        while True:
            try:
                url = client.create_queue(QueueName=f"raw{uuid.uuid4().hex[:8]}")["QueueUrl"]
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        rows = [measure("raw boto3 (batch 10)", n, raw_boto3(client, url))]
        loop = cloudq_loop("bench")
        try:
            rows.append(measure("cloudq (batch send, worker -c 4)", n, loop))
        finally:
            loop.close()  # type: ignore[attr-defined]
    finally:
        stop_process(proc)
    base = rows[0]
    print(f"N = {n} messages, moto server on 127.0.0.1 (send + receive + delete)")
    print(f"{'contender':34} {'wall s':>7} {'msg/s':>7} {'CPU ms/msg':>10} {'CPU ratio':>9}")
    for row in rows:
        print(
            f"{row['name']:34} {row['wall']:7.2f} {row['rate']:7.0f} {row['cpu_ms']:10.3f} "
            f"{float(row['cpu_ms']) / float(base['cpu_ms']):9.2f}"
        )


if __name__ == "__main__":
    main()
