"""Pub/Sub publish + pull + ack: cloudq against raw google-cloud-pubsub, one emulator, one run.

    uv run python bench/pubsub_loop.py [--n 2000]

Starts the gcloud SDK's Pub/Sub emulator jar on a free loopback port (as the tests do) and
reports wall time, messages/s and this process's CPU per message (the emulator runs in its own
JVM, so its CPU is not counted: the CPU column is the client library's own cost). Contenders:

- raw sync: Publish of 10, Pull of 10, Acknowledge (the calls cloudq's adapter makes);
- raw idiomatic: ``PublisherClient.publish`` futures (client-side batching) and a streaming-pull
  ``subscribe`` callback that acks, the SDK's own throughput path;
- cloudq: ``send_envelopes`` in batches, a thread worker ``-c 4`` running a no-op task, with
  the default ``max_batch`` of 10 and with ``max_batch=100``.

Every contender sends and consumes in rounds of 100 messages.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudq.adapters.base import QueueSpec
from cloudq.clock import SYSTEM_CLOCK
from tests.fixtures.pubsub_emulator import JVM_FLAGS, PUBSUB_JAR, free_port, sdk_root

ROUND = 100
PROJECT = "cloudq-bench"
BODY = b'{"task":"noop","args":[]}'


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, n: int, fn: Callable[[int], None]) -> dict[str, float | str]:
    fn(ROUND)  # warm-up round: channels open, code paths loaded
    wall0, cpu0 = time.perf_counter(), cpu()
    for _ in range(n // ROUND):
        fn(ROUND)
    wall, used = time.perf_counter() - wall0, cpu() - cpu0
    return {"name": name, "wall": wall, "rate": n / wall, "cpu_ms": used / n * 1000}


def start_emulator() -> tuple[subprocess.Popen[bytes], str]:
    root = sdk_root()
    jars = sorted(glob.glob(str(root / PUBSUB_JAR))) if root else []
    java = shutil.which("java")
    if not jars or java is None:
        sys.exit("needs java and the gcloud SDK's pubsub-emulator component")
    port = free_port()
    proc = subprocess.Popen(
        [java, *JVM_FLAGS, "-jar", jars[-1], "--host=127.0.0.1", f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return proc, f"127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                sys.exit("the Pub/Sub emulator did not start")
            time.sleep(0.05)


def raw_sync(publisher: Any, subscriber: Any, topic: str, sub: str) -> Callable[[int], None]:
    from google.api_core import exceptions
    from google.pubsub_v1 import types

    def run(count: int) -> None:
        for _ in range(count // 10):
            messages = [types.PubsubMessage(data=BODY) for _ in range(10)]
            publisher.publish(topic=topic, messages=messages)
        got = 0
        while got < count:
            try:
                response = subscriber.pull(
                    request={"subscription": sub, "max_messages": 10}, timeout=2
                )
            except exceptions.DeadlineExceeded:
                continue
            ids = [m.ack_id for m in response.received_messages]
            if ids:
                subscriber.acknowledge(subscription=sub, ack_ids=ids)
            got += len(ids)

    return run


def raw_idiomatic(topic: str, sub: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    done = [0]
    cond = threading.Condition()

    def callback(message: Any) -> None:
        message.ack()
        with cond:
            done[0] += 1
            cond.notify_all()

    future = subscriber.subscribe(sub, callback)

    def run(count: int) -> None:
        target = done[0] + count
        for f in [publisher.publish(topic, BODY) for _ in range(count)]:
            f.result()
        with cond:
            if not cond.wait_for(lambda: done[0] >= target, timeout=120):
                raise TimeoutError("streaming pull fell behind")

    def close() -> None:
        future.cancel()
        with contextlib.suppress(Exception):
            future.result(timeout=10)  # the stream's threads are done before the channel closes
        subscriber.close()
        publisher.stop()

    return run, close


def cloudq_loop(max_batch: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    from cloudq import App
    from cloudq.testing import start_worker, wait_for

    prefix = f"b{uuid.uuid4().hex[:8]}-"
    app = App(
        "bench",
        broker=f"pubsub://{PROJECT}?prefix={prefix}&max_batch={max_batch}",
        queue_lease_seconds=30,
    )
    done = [0]
    lock = threading.Lock()

    @app.task(name="noop", queue="bench", ignore_result=True)
    def noop() -> None:
        with lock:
            done[0] += 1

    app.ensure_queue("bench")

    def run(count: int) -> None:
        target = done[0] + count
        app.send_envelopes([noop.envelope((), {}) for _ in range(count)])
        wait_for(lambda: done[0] >= target, timeout=120, interval=0.005)

    worker = start_worker(app, ["bench"], concurrency=4, poll_seconds=3)
    worker.__enter__()

    def close() -> None:
        worker.__exit__(None, None, None)
        app.close()

    return run, close


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    n = parser.parse_args().n // ROUND * ROUND
    proc, host = start_emulator()
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    rows = []
    try:
        from cloudq_pubsub.broker import PubSubBroker  # after PUBSUB_EMULATOR_HOST is set

        # Topics and subscriptions for the raw contenders, made with cloudq's own ensure().
        admin = PubSubBroker(SYSTEM_CLOCK, PROJECT, prefix=f"r{uuid.uuid4().hex[:8]}-")
        for queue in ("sync", "idiomatic"):
            admin.ensure(QueueSpec(queue))
        rows.append(
            measure(
                "raw sync (publish/pull/ack of 10)",
                n,
                raw_sync(
                    admin.publisher,
                    admin.subscriber,
                    admin.topic_path("sync"),
                    admin.subscription_path("sync"),
                ),
            )
        )
        run, close = raw_idiomatic(
            admin.topic_path("idiomatic"), admin.subscription_path("idiomatic")
        )
        try:
            rows.append(measure("raw idiomatic (batching + streaming)", n, run))
        finally:
            close()
        for max_batch in (10, 100):
            run, close = cloudq_loop(max_batch)
            try:
                rows.append(measure(f"cloudq (worker -c 4, max_batch {max_batch})", n, run))
            finally:
                close()
        admin.close()
    finally:
        proc.terminate()
        proc.wait(10)
    base = rows[0]
    print(f"N = {n} messages, Pub/Sub emulator on 127.0.0.1 (publish + pull + ack)")
    print(f"{'contender':40} {'wall s':>7} {'msg/s':>7} {'CPU ms/msg':>10} {'CPU ratio':>9}")
    for row in rows:
        print(
            f"{row['name']:40} {row['wall']:7.2f} {row['rate']:7.0f} {row['cpu_ms']:10.3f} "
            f"{float(row['cpu_ms']) / float(base['cpu_ms']):9.2f}"
        )


if __name__ == "__main__":
    main()
