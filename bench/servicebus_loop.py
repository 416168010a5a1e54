"""Service Bus send + receive + complete: cloudq against a raw azure-servicebus loop, on one
endpoint, in one run.

    python bench/servicebus_loop.py [--n 1000]

Starts the project's Service Bus test endpoint (tests/servicebus_endpoint) in its own process,
or uses ``CLOUDQ_SERVICEBUS_CONNECTION`` (+ ``CLOUDQ_SERVICEBUS_ADMIN_CONNECTION``) if set.
Reports wall time, messages/s and this process's CPU per message: the endpoint's CPU is not
counted, so the CPU column is the client library's own cost (the SDK's pure-Python AMQP stack
plus, for cloudq, envelopes, the worker and lock keeping). Both contenders send in batches of
20 and consume in rounds of 100 messages.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.servicebus_endpoint import EndpointProcess

ROUND = 100
BATCH = 20


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, n: int, fn: Callable[[int], None]) -> dict[str, float | str]:
    wall0, cpu0 = time.perf_counter(), cpu()
    for _ in range(n // ROUND):
        fn(ROUND)
    wall, used = time.perf_counter() - wall0, cpu() - cpu0
    return {"name": name, "wall": wall, "rate": n / wall, "cpu_ms": used / n * 1000}


def raw_sdk(connection: str, queue: str) -> Callable[[int], None]:
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    client = ServiceBusClient.from_connection_string(connection)
    sender = client.get_queue_sender(queue)
    receiver = client.get_queue_receiver(queue)
    sender.__enter__()
    receiver.__enter__()

    def run(count: int) -> None:
        for _ in range(count // BATCH):
            sender.send_messages(
                [ServiceBusMessage('{"task":"noop","args":[]}') for _ in range(BATCH)]
            )
        got = 0
        while got < count:
            messages = receiver.receive_messages(max_message_count=BATCH, max_wait_time=1)
            for m in messages:
                receiver.complete_message(m)
            got += len(messages)

    def close() -> None:
        sender.close()
        receiver.close()
        client.close()

    run.close = close  # type: ignore[attr-defined]
    return run


def cloudq_loop(queue: str) -> Callable[[int], None]:
    from cloudq import App
    from cloudq.testing import start_worker, wait_for

    app = App(
        "bench", broker=f"servicebus://?prefix=b{uuid.uuid4().hex[:8]}-", queue_lease_seconds=30
    )
    done = [0]

    @app.task(name="noop", queue=queue, ignore_result=True)
    def noop() -> None:
        done[0] += 1

    app.ensure_queue(queue)

    def run(count: int) -> None:
        target = done[0] + count
        for start in range(0, count, BATCH):
            app.send_envelopes([noop.envelope((), {}) for _ in range(min(BATCH, count - start))])
        wait_for(lambda: done[0] >= target, timeout=120, interval=0.005)

    worker = start_worker(app, [queue], concurrency=4, poll_seconds=3)
    worker.__enter__()

    def close() -> None:
        worker.__exit__(None, None, None)
        app.close()

    run.close = close  # type: ignore[attr-defined]
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    n = parser.parse_args().n // ROUND * ROUND
    endpoint: EndpointProcess | None = None
    if not os.environ.get("CLOUDQ_SERVICEBUS_CONNECTION"):
        endpoint = EndpointProcess(Path(tempfile.mkdtemp()) / "endpoint.log")
        endpoint.start()
        os.environ["CLOUDQ_SERVICEBUS_CONNECTION"] = endpoint.connection
        os.environ["CLOUDQ_SERVICEBUS_ADMIN_CONNECTION"] = endpoint.admin_connection
        os.environ["REQUESTS_CA_BUNDLE"] = endpoint.ca_file
    rows: list[dict[str, Any]] = []
    try:
        from cloudq.adapters import open_broker
        from cloudq.adapters.base import QueueSpec
        from cloudq.clock import SYSTEM_CLOCK

        prefix = f"raw{uuid.uuid4().hex[:8]}-"
        setup = open_broker(f"servicebus://?prefix={prefix}", SYSTEM_CLOCK)
        setup.ensure(QueueSpec("q"))
        setup.close()
        raw = raw_sdk(os.environ["CLOUDQ_SERVICEBUS_CONNECTION"], f"{prefix}q")
        try:
            rows.append(measure(f"raw azure-servicebus (batch {BATCH})", n, raw))
        finally:
            raw.close()  # type: ignore[attr-defined]
        loop = cloudq_loop("bench")
        try:
            rows.append(measure("cloudq (batch send, worker -c 4)", n, loop))
        finally:
            loop.close()  # type: ignore[attr-defined]
    finally:
        if endpoint is not None:
            endpoint.stop()
    base = rows[0]
    where = "the test endpoint" if endpoint is not None else "the given namespace"
    print(f"N = {n} messages, {where} on 127.0.0.1 (send + receive + complete)")
    print(f"{'contender':36} {'wall s':>7} {'msg/s':>7} {'CPU ms/msg':>10} {'CPU ratio':>9}")
    for row in rows:
        print(
            f"{row['name']:36} {row['wall']:7.2f} {row['rate']:7.0f} {row['cpu_ms']:10.3f} "
            f"{float(row['cpu_ms']) / float(base['cpu_ms']):9.2f}"
        )


if __name__ == "__main__":
    main()
