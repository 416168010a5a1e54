"""Real ``cloudq -A tests.apps.servicebus_app worker`` subprocesses against the Service Bus test
endpoint (or the emulator / namespace in ``CLOUDQ_SERVICEBUS_CONNECTION``), results in Azure
Tables on Azurite."""

from __future__ import annotations

import signal
import time

import pytest

from cloudq.envelope import HEADER_DEAD_LETTER_REASON, HEADER_ERROR_TYPE, decode
from cloudq_servicebus.broker import REASON_ATTRIBUTE
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint
from tests.integration.scenarios import drained, retries_back_off_exactly, sigterm_while_running
from tests.integration.servicebus.conftest import raw_receive
from tests.integration.stack import Stack
from tests.processes import events, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_countdown_is_held_by_the_broker_and_runs_no_earlier(stack: Stack) -> None:
    producer = stack.producer()
    worker = stack.worker(["delays"])
    worker.wait_ready()
    marker = stack.tmp / "stamp.log"

    sent = time.time()
    result = producer.tasks["sb.stamp"].apply_async(
        (str(marker), "late"), countdown=3, queue="delays"
    )
    # Service Bus holds it (scheduled_enqueue_time), not the worker.
    assert producer.broker.stats("delays").delayed == 1

    ran = result.get(timeout=20)
    assert ran >= sent + 3, f"ran {ran - sent:.2f}s after sending, before its countdown"
    assert ran < sent + 3 + 5, f"ran {ran - sent:.2f}s after sending: far later than due"
    assert [e[0] for e in events(marker, "ran")] == [worker.pid]
    wait_for(lambda: drained(producer, "delays"), 10, "the queue to be empty", stack.logs)


def test_retries_back_off_exactly_then_succeed(stack: Stack) -> None:
    producer, _ = retries_back_off_exactly(stack, "sb")
    wait_for(lambda: drained(producer, "retries"), 10, "the queue to be empty", stack.logs)


def test_poison_task_ends_in_the_dead_letter_queue_and_the_worker_goes_on(
    stack: Stack, servicebus_env: ServiceBusEndpoint
) -> None:
    producer = stack.producer()
    worker = stack.worker(["poison"])
    worker.wait_ready()
    marker = stack.tmp / "doomed.log"

    result = producer.tasks["sb.doomed"].apply_async((str(marker),), queue="poison")
    with pytest.raises(RuntimeError, match="doomed attempt 2"):
        result.get(timeout=30)

    dlq = f"{stack.prefix}poison-dlq"
    (dead,) = wait_for(
        lambda: raw_receive(servicebus_env.connection, dlq), 10, "the dead letter", stack.logs
    )
    reason = dead.application_properties[REASON_ATTRIBUTE.encode()].decode()
    assert reason.startswith("max retries (1) exceeded: builtins.RuntimeError: doomed attempt 2")
    envelope = decode(b"".join(dead.body))
    assert envelope.id == result.id and envelope.attempt == 2
    assert envelope.headers[HEADER_ERROR_TYPE] == "builtins.RuntimeError"
    assert envelope.headers[HEADER_DEAD_LETTER_REASON] == reason

    after = producer.tasks["sb.stamp"].apply_async((str(stack.tmp / "next.log"),), queue="poison")
    assert after.get(timeout=15) > 0
    assert worker.proc.poll() is None
    wait_for(lambda: drained(producer, "poison"), 10, "the queue to be empty", stack.logs)
    assert raw_receive(servicebus_env.connection, dlq, wait=0.5) == [], "one dead letter only"


def test_lock_is_renewed_while_a_task_outlives_it(stack: Stack) -> None:
    # Lease 2 s; the queue's lock is then 5 s (the floor cloudq asks for). The task runs 6 s:
    # past the lock, so only renewals keep it from coming back (to this worker, which has room
    # for more, or to any other).
    producer = stack.producer(queue_lease_seconds=2)
    worker = stack.worker(["beat"], queue_lease_seconds=2)
    worker.wait_ready()
    marker = stack.tmp / "hold.log"

    result = producer.tasks["sb.hold"].apply_async((str(marker), 6.0), queue="beat")
    assert result.get(timeout=30) == 1, "the first delivery ran to the end"
    wait_for(lambda: drained(producer, "beat"), 10, "the queue to be empty", stack.logs)
    starts = events(marker, "start")
    assert len(starts) == 1, f"redelivered while running: {starts}\n{stack.logs()}"
    (done,) = events(marker, "done")
    assert done[1] - starts[0][1] >= 6.0
    assert "no longer locked" not in worker.log()


def test_sigkilled_worker_task_runs_once_more_after_the_lock_ends(stack: Stack) -> None:
    lease = 3  # the queue's lock: 5 s (cloudq's floor)
    producer = stack.producer(queue_lease_seconds=lease)
    workers = [stack.worker(["crash"], queue_lease_seconds=lease) for _ in range(2)]
    for w in workers:
        w.wait_ready()
    marker = stack.tmp / "hold.log"

    result = producer.tasks["sb.hold"].apply_async((str(marker), 30.0, True), queue="crash")
    ((pid, started, count),) = wait_for(
        lambda: events(marker, "start"), 15, "the task to start", stack.logs
    )
    assert count == "1"
    (victim,) = [w for w in workers if w.pid == pid]
    (survivor,) = [w for w in workers if w.pid != pid]
    victim.signal(signal.SIGKILL)
    assert victim.wait_exit(10) == -signal.SIGKILL

    assert result.get(timeout=30) == 2, "redelivered with delivery count 2"
    starts = events(marker, "start")
    assert len(starts) == 2, f"expected exactly one more run: {starts}"
    again_pid, again, again_count = starts[1]
    assert (again_pid, again_count) == (survivor.pid, "2")
    assert again - started >= lease - 0.5, f"came back {again - started:.2f}s after the start"
    wait_for(lambda: drained(producer, "crash"), 10, "the queue to be empty", stack.logs)


def test_sigterm_finishes_the_running_task_and_releases_prefetched_at_once(stack: Stack) -> None:
    stats = sigterm_while_running(stack, "sb").producer.broker.stats("term")
    assert (stats.visible, stats.in_flight, stats.delayed) == (4, 0, 0), stats
