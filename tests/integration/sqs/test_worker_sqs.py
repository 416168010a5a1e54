"""Real ``cloudq -A tests.apps.sqs_app worker`` subprocesses against a moto server over HTTP.

The test process is the producer (its own App on the same ``sqs://?prefix=...`` broker and
Redis result backend) and the observer (results, marker files written by the tasks, the
workers' logs, queue attributes read with boto3). Every test has queues of its own (a unique
prefix) and keeps them shallow. Waits are on conditions with timeouts; worker processes are
killed in a ``finally`` whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudq.envelope import (
    HEADER_DEAD_LETTER_REASON,
    HEADER_ERROR_TRACEBACK,
    HEADER_ERROR_TYPE,
    decode,
)
from tests.apps import sqs_app
from tests.fixtures.moto_server import MOTO_SERVER
from tests.fixtures.servers import free_port
from tests.integration.scenarios import drained, retries_back_off_exactly, sigterm_while_running
from tests.integration.stack import Stack, new_prefix
from tests.processes import STARTUP_TIMEOUT, events, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90), pytest.mark.sqs_servers]

APP_REF = "tests.apps.sqs_app"
MOTO_ONLY = pytest.mark.sqs_servers("moto")
"""On moto alone: a test that needs no server's behaviour of its own (the broker-down start,
a server stopped and restarted by the test). Every worker scenario issue 23 names (countdown,
retries, DLQ, heartbeat, SIGKILL, SIGTERM, FIFO, hops) runs on LocalStack too."""
REASON_ATTRIBUTE = "cloudq-dead-letter-reason"


@pytest.fixture
def stack(sqs_env: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    prefix = new_prefix()
    backend_url = f"{redis_url}?prefix=cloudq-{prefix}"
    broker_url = f"sqs://?prefix={prefix}"
    with Stack(tmp_path, broker_url, backend_url, prefix, sqs_app.make_app, APP_REF) as s:
        yield s


@pytest.fixture
def raw(sqs_env: str) -> Any:
    """A plain boto3 client on the same moto, to look at queues behind cloudq's back."""
    import boto3  # type: ignore[import-untyped, unused-ignore]

    return boto3.client("sqs", region_name="us-east-1")


# --- 1. delays ------------------------------------------------------------------------------
def test_countdown_runs_no_earlier_than_its_delay(stack: Stack) -> None:
    producer = stack.producer()
    worker = stack.worker(["delays"])
    worker.wait_ready()
    marker = stack.tmp / "stamp.log"

    sent = time.time()
    stamp = producer.tasks["sqs.stamp"]
    result = stamp.apply_async((str(marker), "late"), countdown=3, queue="delays")
    # The broker holds it (native DelaySeconds), not the worker.
    assert producer.broker.stats("delays").delayed == 1

    ran = result.get(timeout=20)
    assert ran >= sent + 3, f"ran {ran - sent:.2f}s after sending, before its countdown of 3s"
    assert ran < sent + 3 + 5, f"ran {ran - sent:.2f}s after sending: far later than due"
    assert [e[0] for e in events(marker, "ran")] == [worker.pid], "ran exactly once"
    wait_for(lambda: drained(producer, "delays"), 10, "the delay queue to be empty", stack.logs)


# --- 2. retries -----------------------------------------------------------------------------
def test_autoretry_backs_off_exactly_then_succeeds(stack: Stack) -> None:
    producer, _ = retries_back_off_exactly(stack, "sqs")
    wait_for(lambda: drained(producer, "retries"), 10, "the retry queue to be empty", stack.logs)


# --- 3. dead letters ------------------------------------------------------------------------
def test_task_that_always_fails_ends_in_the_dlq_and_the_worker_goes_on(
    stack: Stack, raw: Any
) -> None:
    producer = stack.producer()
    worker = stack.worker(["poison"])
    worker.wait_ready()
    marker = stack.tmp / "doomed.log"

    result = producer.tasks["sqs.doomed"].apply_async((str(marker),), queue="poison")
    with pytest.raises(RuntimeError, match="doomed attempt 2"):
        result.get(timeout=30)
    assert [int(a[2]) for a in events(marker, "attempt")] == [1, 2], "max_retries=1: two attempts"

    dlq_url = raw.get_queue_url(QueueName=f"{stack.prefix}poison-dlq")["QueueUrl"]

    def dead_letters() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = raw.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=30,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        return got

    (dead,) = wait_for(dead_letters, 10, "the dead letter", stack.logs)
    reason = dead["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert reason.startswith("max retries (1) exceeded: builtins.RuntimeError: doomed attempt 2")
    envelope = decode(dead["Body"].encode())
    assert envelope.id == result.id
    assert envelope.task == "sqs.doomed"
    assert envelope.attempt == 2
    assert envelope.headers[HEADER_ERROR_TYPE] == "builtins.RuntimeError"
    assert envelope.headers[HEADER_DEAD_LETTER_REASON] == reason
    traceback = envelope.headers[HEADER_ERROR_TRACEBACK]
    assert "Traceback (most recent call last)" in traceback
    assert "RuntimeError: doomed attempt 2" in traceback

    # The worker is alive and well: the next task runs.
    after = producer.tasks["sqs.stamp"].apply_async((str(stack.tmp / "next.log"),), queue="poison")
    assert after.get(timeout=15) > 0
    assert worker.proc.poll() is None
    wait_for(lambda: drained(producer, "poison"), 10, "the poison queue to be empty", stack.logs)
    assert len(dead_letters()) == 0, "exactly one dead letter"


# --- 4. heartbeat ---------------------------------------------------------------------------
def test_heartbeat_keeps_a_task_3x_longer_than_its_lease_from_redelivery(stack: Stack) -> None:
    producer = stack.producer(queue_lease_seconds=2)
    first = stack.worker(["beat"], queue_lease_seconds=2)
    second = stack.worker(["beat"], queue_lease_seconds=2)
    first.wait_ready()
    second.wait_ready()
    assert "lease 2s" in first.log()
    marker = stack.tmp / "hold.log"

    result = producer.tasks["sqs.hold"].apply_async((str(marker), 6.0), queue="beat")
    assert result.get(timeout=30) == 1, "first delivery ran to the end"
    wait_for(lambda: drained(producer, "beat"), 10, "the queue to be empty", stack.logs)

    starts = events(marker, "start")
    assert len(starts) == 1, f"redelivered while running: {starts}\n{stack.logs()}"
    assert starts[0][0] in (first.pid, second.pid)
    (done,) = events(marker, "done")
    assert done[1] - starts[0][1] >= 6.0
    assert first.proc.poll() is None and second.proc.poll() is None


# --- 5. SIGKILL -----------------------------------------------------------------------------
def test_sigkilled_worker_task_runs_once_more_after_the_visibility_timeout(stack: Stack) -> None:
    lease = 3
    producer = stack.producer(queue_lease_seconds=lease)
    workers = [stack.worker(["crash"], queue_lease_seconds=lease) for _ in range(2)]
    for w in workers:
        w.wait_ready()
    marker = stack.tmp / "hold.log"

    result = producer.tasks["sqs.hold"].apply_async((str(marker), 30.0, True), queue="crash")
    ((pid, started, count),) = wait_for(
        lambda: events(marker, "start"), 15, "the task to start", stack.logs
    )
    assert count == "1"
    (victim,) = [w for w in workers if w.pid == pid]
    (survivor,) = [w for w in workers if w.pid != pid]
    victim.signal(signal.SIGKILL)
    killed = time.time()
    assert victim.wait_exit(10) == -signal.SIGKILL

    assert result.get(timeout=30) == 2, "redelivered with delivery count 2"
    wait_for(lambda: drained(producer, "crash"), 10, "the queue to be empty", stack.logs)
    starts = events(marker, "start")
    assert len(starts) == 2, f"expected exactly one more run: {starts}"
    again_pid, again, again_count = starts[1]
    assert again_pid == survivor.pid
    assert again_count == "2"
    assert again > killed
    # Visibility was set to the lease when the message was received (before the first start),
    # and only ever extended: it cannot have come back sooner than a lease after that.
    assert again - started >= lease - 0.5, f"came back {again - started:.2f}s after the start"
    assert [(p, c) for p, _, c in events(marker, "done")] == [(survivor.pid, "2")]
    assert survivor.proc.poll() is None


# --- 6. SIGTERM -----------------------------------------------------------------------------
def test_sigterm_finishes_the_running_task_and_releases_prefetched_at_once(stack: Stack) -> None:
    stopped = sigterm_while_running(stack, "sqs")
    stats = stopped.producer.broker.stats("term")
    assert time.monotonic() - stopped.exited < 5
    assert (stats.visible, stats.in_flight, stats.delayed) == (4, 0, 0), stats


# --- 7. broker outages ----------------------------------------------------------------------
RETRYING = r"; retrying in \d"


@MOTO_ONLY
@pytest.mark.parametrize("create_queues", [False, True], ids=["queues-exist", "creating-queues"])
def test_worker_started_while_the_broker_is_down_retries_and_stops_cleanly(
    stack: Stack, create_queues: bool
) -> None:
    env = stack.env(create_missing_queues=create_queues)
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env["AWS_MAX_ATTEMPTS"] = "1"
    worker = stack.worker(["down"], env=env)

    worker.wait_log(RETRYING, 20, count=3)
    assert worker.proc.poll() is None, worker.log()
    if not create_queues:
        assert worker.find(r"receive failed; retrying in \d"), worker.log()
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(15) == 0, worker.log()


class MotoServer:
    """A moto server of this test's own, stopped and restarted on the same port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/moto-api/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc
        wait_for(
            lambda: proc.poll() is not None or self._answers(),
            STARTUP_TIMEOUT,
            "the private moto server",
        )
        assert proc.poll() is None, self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.mark.sqs_servers("moto")  # stops and restarts a moto server of its own
def test_worker_survives_a_broker_outage(stack: Stack, tmp_path: Path) -> None:
    moto = MotoServer(tmp_path / "moto.log")
    moto.start()
    try:
        stack.broker_url = f"sqs://?prefix={stack.prefix}&endpoint_url={moto.url}"
        env = stack.env()
        env["AWS_MAX_ATTEMPTS"] = "1"
        producer = stack.producer()
        worker = stack.worker(["outage"], env=env)
        worker.wait_ready()
        marker = str(tmp_path / "stamp.log")
        assert producer.tasks["sqs.stamp"].apply_async((marker,), queue="outage").get(timeout=15)

        moto.stop()
        mark = len(worker.lines)
        worker.wait_log(r"receive failed; retrying in \d", 20, count=2, start=mark)
        assert worker.proc.poll() is None

        moto.start()  # same port, but empty: moto keeps no state (AWS would keep the queue)
        producer.broker.ensure(producer.queue_spec("outage"))
        again = producer.tasks["sqs.stamp"].apply_async((marker, "after"), queue="outage")
        assert again.get(timeout=30) > 0, "the worker took work again once the broker was back"
        assert [e[0] for e in events(tmp_path / "stamp.log", "ran")] == [worker.pid] * 2

        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(15) == 0, worker.log()
    finally:
        try:
            stack.close()
        finally:
            moto.stop()
