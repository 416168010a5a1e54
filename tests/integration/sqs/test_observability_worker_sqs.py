"""Every observability integration in a real ``cloudq worker`` on moto SQS, one worker per pool
(threads, processes) that checks them all at once: Prometheus metrics scraped from
``--metrics-port`` (prometheus_client's multiprocess mode in the processes pool), OpenTelemetry
spans continuing the test process's trace, JSON log lines (``--log-format json``, the parent's
and its children's) with the task's and the trace's ids, and one Sentry event and one error
report for the final failure only, arguments redacted. ``tests.apps.obs_app`` configures them
in its module, as a user's tasks.py would, and writes what each process observed to files."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cloudq.contrib.opentelemetry import CloudqInstrumentor
from cloudq.reports import REDACTED
from tests.apps import obs_app
from tests.fixtures.servers import free_port
from tests.integration.stack import Stack, new_prefix
from tests.processes import CLOUDQ, STARTUP_TIMEOUT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

APP_REF = "tests.apps.obs_app"
QUEUE = "metrics"


@pytest.fixture
def stack(sqs_env: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    prefix = new_prefix()
    backend_url = f"{redis_url}?prefix=cloudq-{prefix}"
    with Stack(
        tmp_path, f"sqs://?prefix={prefix}", backend_url, prefix, obs_app.make_app, APP_REF
    ) as s:
        yield s


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def sends(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """The test process (the producer) traces its sends into memory."""
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    CloudqInstrumentor().instrument(tracer_provider=provider)
    yield exporter
    CloudqInstrumentor().uninstrument()


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
def test_every_integration_observes_the_worker(
    stack: Stack, provider: TracerProvider, sends: InMemorySpanExporter, pool: str
) -> None:
    files = {name: stack.tmp / f"{name}.jsonl" for name in ("spans", "sentry", "reports")}
    env = stack.env()
    env[obs_app.SPANS_ENV] = str(files["spans"])
    env[obs_app.SENTRY_ENV] = str(files["sentry"])
    env[obs_app.REPORTS_ENV] = str(files["reports"])
    port = free_port()
    command = [*CLOUDQ, "-A", APP_REF, "worker", "-Q", QUEUE, "-c", "2", "-P", pool]
    command += ["--metrics-port", str(port), "-l", "info", "--log-format", "json"]
    worker = stack.spawn(command, env, "worker", True)
    worker.wait_ready()
    served = worker.wait_log(
        r"metrics on http://127\.0\.0\.1:\d+/metrics(?: \(multiprocess samples in ([^\"\s]+)\))?",
        STARTUP_TIMEOUT,
    )
    producer = stack.producer()
    marker = str(stack.tmp / "ran.log")
    with provider.get_tracer("test").start_as_current_span("request"):
        charge = producer.tasks["obs.charge"].apply_async((42,), queue=QUEUE)
    stamps = [producer.tasks["sqs.stamp"].apply_async((marker,), queue=QUEUE) for _ in range(2)]
    doomed = producer.tasks["sqs.doomed"].apply_async((marker,), queue=QUEUE)
    assert charge.get(timeout=20) == 42
    for result in stamps:
        result.get(timeout=20)

    def finished() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        samples = scrape(port)
        failed = value(
            samples, "cloudq_tasks_total", task="sqs.doomed", queue=QUEUE, outcome="failure"
        )
        # Counted at the end of the run; its dead letter a moment later, when it is settled.
        dead = value(samples, "cloudq_dead_letters_total", queue=QUEUE)
        return samples if (failed, dead) == (1, 1) else None

    # Prometheus.
    samples = wait_for(finished, 20, "the doomed task's final failure in /metrics", worker.log)
    stamp = {"task": "sqs.stamp", "queue": QUEUE}
    assert value(samples, "cloudq_tasks_total", outcome="success", **stamp) == 2
    assert (
        value(samples, "cloudq_tasks_total", task="sqs.doomed", queue=QUEUE, outcome="retry") == 1
    )
    assert value(samples, "cloudq_task_duration_seconds_count", **stamp) == 2
    assert value(samples, "cloudq_dead_letters_total", queue=QUEUE) == 1
    assert value(samples, "cloudq_task_queue_latency_seconds_count", **stamp) == 2
    # Seconds, not a clock's garbage: a processes-pool child's first start is in it (slow here).
    assert 0 < value(samples, "cloudq_task_queue_latency_seconds_sum", **stamp) < 2 * 30
    assert value(samples, "cloudq_broker_calls_total", call="receive") >= 1
    assert value(samples, "cloudq_broker_calls_total", call="ack") >= 1
    assert value(samples, "cloudq_broker_messages_total", call="receive") >= 5  # 3 + doomed x2
    assert value(samples, "cloudq_broker_messages_total", call="ack") >= 4
    assert value(samples, "cloudq_worker_pool_size") == 2
    # The parent settles after the child has counted the task: in-flight drops a moment later.
    wait_for(lambda: value(scrape(port), "cloudq_tasks_in_flight") == 0, 10, "no task in flight")
    wait_for(lambda: obs_app.read_json_lines(files["reports"]), 10, "the error report", worker.log)

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0
    if pool == "processes":
        assert served.group(1), "the processes pool runs in multiprocess mode"
        assert not Path(served.group(1)).exists(), "its samples directory is removed at stop"

    # OpenTelemetry: the worker's run of obs.charge continues the test process's send.
    [send] = [s for s in sends.get_finished_spans() if s.name == "send obs.charge"]
    trace_id, send_id = f"{send.context.trace_id:032x}", f"{send.context.span_id:016x}"
    spans = obs_app.read_json_lines(files["spans"])
    [run] = [s for s in spans if s["name"] == "process obs.charge"]
    assert (run["trace_id"], run["parent_id"]) == (trace_id, send_id)
    assert run["kind"] == "CONSUMER" and run["attributes"]["messaging.system"] == "aws_sqs"
    assert run["attributes"]["cloudq.task.id"] == charge.id
    doomed_runs = [s for s in spans if s["name"] == "process sqs.doomed"]
    assert [(s["attributes"]["cloudq.state"], s["status"]) for s in doomed_runs] == [
        ("RETRY", "UNSET"),
        ("FAILURE", "ERROR"),
    ]
    if pool == "processes":
        assert run["pid"] != worker.pid, "traced in the pool child"

    # JSON logs: the line logged inside obs.charge carries its task's and its span's ids.
    logged = [json.loads(line) for line in worker.lines if line.startswith("{")]
    [line] = [r for r in logged if r.get("message") == "charging order 42"]
    assert (line["task_id"], line["task"], line["queue"]) == (charge.id, "obs.charge", QUEUE)
    assert (line["trace_id"], line["span_id"]) == (trace_id, run["span_id"])
    if pool == "processes":
        assert line["processName"] != "MainProcess", "logged by the pool child"
    assert any("ready" in str(r["message"]) for r in logged), "the parent logs JSON too"

    # Sentry and the error reports: the final failure once, not its retry; arguments redacted.
    [event] = obs_app.read_json_lines(files["sentry"])
    assert event["tags"]["cloudq.task"] == "sqs.doomed"
    assert (event["tags"]["cloudq.task_id"], event["tags"]["cloudq.attempt"]) == (doomed.id, "2")
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["contexts"]["cloudq"]["args"] == REDACTED
    assert marker not in json.dumps(event), "neither the arguments nor the frames' variables"
    [report] = obs_app.read_json_lines(files["reports"])
    assert (report["task"], report["task_id"], report["attempt"]) == ("sqs.doomed", doomed.id, 2)
    assert report["args"] == REDACTED and "doomed attempt 2" in report["reason"]
