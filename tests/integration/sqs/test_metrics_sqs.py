"""Prometheus metrics scraped from a real ``cloudq worker --metrics-port`` on moto SQS, in the
threads pool and in the processes pool (prometheus_client's multiprocess mode); the processes
pool's worker also logs JSON (``--log-format json``), the parent and its children."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apps import sqs_app
from tests.fixtures.servers import free_port
from tests.integration.stack import Stack, new_prefix
from tests.processes import CLOUDQ, STARTUP_TIMEOUT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

APP_REF = "tests.apps.sqs_app"
QUEUE = "metrics"


@pytest.fixture
def stack(sqs_env: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    prefix = new_prefix()
    backend_url = f"{redis_url}?prefix=cloudq-{prefix}"
    with Stack(
        tmp_path, f"sqs://?prefix={prefix}", backend_url, prefix, sqs_app.make_app, APP_REF
    ) as s:
        yield s


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``(sample name, labels) -> value`` of one scrape of ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_scraped_metrics_count_what_the_worker_did(stack: Stack, pool: str) -> None:
    port = free_port()
    command = [*CLOUDQ, "-A", APP_REF, "worker", "-Q", QUEUE, "-c", "2", "-P", pool]
    command += ["--metrics-port", str(port)]
    command += ["-l", "debug", "--log-format", "json"] if pool == "processes" else ["-l", "info"]
    worker = stack.spawn(command, stack.env(), "worker", True)
    worker.wait_ready()
    served = worker.wait_log(
        r"metrics on http://127\.0\.0\.1:\d+/metrics(?: \(multiprocess samples in (\S+)\))?",
        STARTUP_TIMEOUT,
    )
    producer = stack.producer()
    marker = str(stack.tmp / "ran.log")
    stamps = [producer.tasks["sqs.stamp"].apply_async((marker,), queue=QUEUE) for _ in range(3)]
    producer.tasks["sqs.doomed"].apply_async((marker,), queue=QUEUE)
    for result in stamps:
        result.get(timeout=20)

    def finished() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        samples = scrape(port)
        failed = value(
            samples, "cloudq_tasks_total", task="sqs.doomed", queue=QUEUE, outcome="failure"
        )
        return samples if failed == 1 else None

    samples = wait_for(finished, 20, "the doomed task's final failure in /metrics", worker.log)
    stamp = {"task": "sqs.stamp", "queue": QUEUE}
    assert value(samples, "cloudq_tasks_total", outcome="success", **stamp) == 3
    assert (
        value(samples, "cloudq_tasks_total", task="sqs.doomed", queue=QUEUE, outcome="retry") == 1
    )
    assert value(samples, "cloudq_task_duration_seconds_count", **stamp) == 3
    assert value(samples, "cloudq_dead_letters_total", queue=QUEUE) == 1
    assert value(samples, "cloudq_task_queue_latency_seconds_count", **stamp) == 3
    # Seconds, not a clock's garbage: a processes-pool child's first start is in it (slow here).
    assert 0 < value(samples, "cloudq_task_queue_latency_seconds_sum", **stamp) < 3 * 30
    assert value(samples, "cloudq_broker_calls_total", call="receive") >= 1
    assert value(samples, "cloudq_broker_calls_total", call="ack") >= 1
    assert value(samples, "cloudq_broker_messages_total", call="receive") >= 5  # 3 + doomed x2
    assert value(samples, "cloudq_broker_messages_total", call="ack") >= 4
    assert value(samples, "cloudq_worker_pool_size") == 2
    # The parent settles after the child has counted the task: in-flight drops a moment later.
    wait_for(lambda: value(scrape(port), "cloudq_tasks_in_flight") == 0, 10, "no task in flight")

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0
    if pool == "processes":
        assert served.group(1), "the processes pool runs in multiprocess mode"
        assert not Path(served.group(1)).exists(), "its samples directory is removed at stop"
        logged = [json.loads(line) for line in worker.lines if line.startswith("{")]
        started = [r for r in logged if r.get("task_id") == stamps[0].id]
        assert started, f"a JSON line from the child running {stamps[0].id}\n{worker.log()}"
        assert started[0]["task"] == "sqs.stamp" and started[0]["queue"] == QUEUE
        assert started[0]["processName"] != "MainProcess", "logged by the pool child"
        assert any("ready" in str(r["message"]) for r in logged), "the parent logs JSON too"
