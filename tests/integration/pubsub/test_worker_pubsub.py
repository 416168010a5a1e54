"""Real ``cloudq -A tests.apps.pubsub_app worker`` subprocesses on the Pub/Sub emulator, with
results in the Firestore emulator.

The test process is the producer (its own App on the same ``pubsub://`` prefix and Firestore
collection) and the observer (results, marker files written by the tasks, the workers' logs,
pulls of its own). Pub/Sub has no message counts, so "nothing left" is checked by pulling.
Waits are on conditions with timeouts; subprocesses are killed in a ``finally`` whatever happens.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudq.envelope import (
    HEADER_DEAD_LETTER_REASON,
    HEADER_ERROR_TRACEBACK,
    HEADER_ERROR_TYPE,
    decode,
)
from tests.integration.pubsub.helpers import (
    PubSubStack,
    nothing_visible,
    pull_all,
)
from tests.integration.scenarios import retries_back_off_exactly, sigterm_while_running
from tests.integration.stack import Stack
from tests.processes import STARTUP_TIMEOUT, events, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

REASON_ATTRIBUTE = "cloudq-dead-letter-reason"
READY = r"worker \S+ ready: "


@pytest.fixture
def stack(pubsub_env: str, firestore_env: str, tmp_path: Path) -> Iterator[PubSubStack]:
    with PubSubStack(tmp_path) as s:
        yield s


# --- 1. delays ------------------------------------------------------------------------------
def test_countdown_is_held_by_the_ack_deadline_and_runs_no_earlier(stack: Stack) -> None:
    producer = stack.producer()
    worker = stack.worker(["delays"])
    worker.wait_log(READY, STARTUP_TIMEOUT)
    marker = stack.tmp / "stamp.log"

    sent = time.time()
    result = producer.tasks["ps.stamp"].apply_async(
        (str(marker), "late"), countdown=3, queue="delays"
    )
    ran = result.get(timeout=20)
    assert ran >= sent + 3, f"ran {ran - sent:.2f}s after sending, before its countdown of 3s"
    assert ran < sent + 3 + 3, f"ran {ran - sent:.2f}s after sending: far later than due"
    assert [e[0] for e in events(marker, "ran")] == [worker.pid], "ran exactly once"
    assert nothing_visible(producer, "delays")


# --- 2. retries -----------------------------------------------------------------------------
def test_autoretry_backs_off_exactly_then_succeeds(stack: Stack) -> None:
    producer, _ = retries_back_off_exactly(stack, "ps")
    assert nothing_visible(producer, "retries")


# --- 3. dead letters ------------------------------------------------------------------------
def test_task_that_always_fails_ends_in_the_dlq_and_the_worker_goes_on(stack: Stack) -> None:
    producer = stack.producer()
    worker = stack.worker(["poison"])
    worker.wait_log(READY, STARTUP_TIMEOUT)
    marker = stack.tmp / "doomed.log"

    result = producer.tasks["ps.doomed"].apply_async((str(marker),), queue="poison")
    with pytest.raises(RuntimeError, match="doomed attempt 2"):
        result.get(timeout=30)
    assert [int(a[2]) for a in events(marker, "attempt")] == [1, 2], "max_retries=1: two attempts"

    (dead,) = wait_for(lambda: pull_all(producer, "poison-dlq", 5), 10, "the dead letter")
    reason = dead.attributes[REASON_ATTRIBUTE]
    assert reason.startswith("max retries (1) exceeded: builtins.RuntimeError: doomed attempt 2")
    assert dead.message_id.startswith(result.id)
    envelope = decode(dead.body)
    assert (envelope.id, envelope.task, envelope.attempt) == (result.id, "ps.doomed", 2)
    assert envelope.headers[HEADER_ERROR_TYPE] == "builtins.RuntimeError"
    assert envelope.headers[HEADER_DEAD_LETTER_REASON] == reason
    assert "RuntimeError: doomed attempt 2" in envelope.headers[HEADER_ERROR_TRACEBACK]
    producer.broker.ack([dead])

    # The worker is alive and well: the next task runs.
    after = producer.tasks["ps.stamp"].apply_async((str(stack.tmp / "next.log"),), queue="poison")
    assert after.get(timeout=15) > 0
    assert worker.proc.poll() is None
    assert nothing_visible(producer, "poison")
    assert nothing_visible(producer, "poison-dlq", wait=0.5), "exactly one dead letter"


# --- 4. heartbeat ---------------------------------------------------------------------------
def test_heartbeat_keeps_a_task_3x_longer_than_its_lease_from_redelivery(stack: Stack) -> None:
    producer = stack.producer(queue_lease_seconds=2)
    first = stack.worker(["beat"], queue_lease_seconds=2)
    second = stack.worker(["beat"], queue_lease_seconds=2)
    first.wait_log(READY, STARTUP_TIMEOUT)
    second.wait_log(READY, STARTUP_TIMEOUT)
    assert "lease 2s" in first.log()
    marker = stack.tmp / "hold.log"

    result = producer.tasks["ps.hold"].apply_async((str(marker), 6.0), queue="beat")
    assert result.get(timeout=30) == 1, "first delivery ran to the end"
    starts = events(marker, "start")
    assert len(starts) == 1, f"redelivered while running: {starts}\n{stack.logs()}"
    (done,) = events(marker, "done")
    assert done[1] - starts[0][1] >= 6.0
    assert nothing_visible(producer, "beat", wait=2.5), "acked, not left to expire"
    assert first.proc.poll() is None and second.proc.poll() is None


# --- 5. SIGKILL -----------------------------------------------------------------------------
def test_sigkilled_worker_task_runs_once_more_after_the_ack_deadline(stack: Stack) -> None:
    lease = 3
    producer = stack.producer(queue_lease_seconds=lease)
    workers = [stack.worker(["crash"], queue_lease_seconds=lease) for _ in range(2)]
    for w in workers:
        w.wait_log(READY, STARTUP_TIMEOUT)
    marker = stack.tmp / "hold.log"

    result = producer.tasks["ps.hold"].apply_async((str(marker), 30.0, True), queue="crash")
    ((pid, started, count),) = wait_for(
        lambda: events(marker, "start"), 15, "the task to start", stack.logs
    )
    assert count == "1"
    (victim,) = [w for w in workers if w.pid == pid]
    (survivor,) = [w for w in workers if w.pid != pid]
    victim.signal(signal.SIGKILL)
    killed = time.time()
    assert victim.wait_exit(10) == -signal.SIGKILL

    assert result.get(timeout=30) == 2, "redelivered with delivery attempt 2"
    starts = events(marker, "start")
    assert len(starts) == 2, f"expected exactly one more run: {starts}"
    again_pid, again, again_count = starts[1]
    assert (again_pid, again_count) == (survivor.pid, "2")
    assert again > killed
    # The lease was set on receipt (before the start) and only ever extended.
    assert again - started >= lease - 0.5, f"came back {again - started:.2f}s after the start"
    assert [(p, c) for p, _, c in events(marker, "done")] == [(survivor.pid, "2")]
    assert nothing_visible(producer, "crash")


# --- 6. SIGTERM -----------------------------------------------------------------------------
def test_sigterm_finishes_the_running_task_and_releases_prefetched_at_once(stack: Stack) -> None:
    producer = sigterm_while_running(stack, "ps").producer
    # Released with a zero ack deadline: all four can be pulled at once, not after 60 s.
    back = pull_all(producer, "term", 5)
    assert sorted(decode(d.body).task for d in back) == ["ps.stamp"] * 4
