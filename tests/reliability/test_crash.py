"""SIGKILL workers mid-task, repeatedly; SIGTERM one during load. Nothing may be lost."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.reliability.conftest import BROKERS, SLOW
from tests.reliability.figures import write_row
from tests.reliability.harness import Ledger, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LEASE = 3
"""Short, so a killed worker's tasks come back soon; not shorter: a heartbeat or an ack that a
busy 2-core machine delays by a second must not let a live worker's message expire."""
QUEUE = "crash"
SIGKILL_RUNS = {
    # broker: (N, seconds per task, settle timeout); sized for the CI budget (docs/reliability.md)
    "sqs": (2000, 0.05, 120),
    "sqs-localstack": (1000, 0.05, 120),  # half: LocalStack's share of CI (adapters/sqs/README.md)
    "pubsub": (2000, 0.05, 150),
    "servicebus": (2000, 0.05, 180),
}


def _kill_mid_task(
    ledger: Ledger, n: int, kills: int, seconds: float, timeout: float, set_: str = "ci"
) -> None:
    producer = ledger.producer(queue_lease_seconds=LEASE)
    producer.ensure_queue(QUEUE)
    workers = [ledger.worker(QUEUE, 4, queue_lease_seconds=LEASE) for _ in range(3)]
    for w in workers:
        w.wait_ready()
    started = time.monotonic()
    feeder = ledger.feed(producer, "ledger.work", n, QUEUE, seconds)
    ids = feeder.ids
    rng = random.Random(n)
    victims: list[int] = []
    while len(victims) < kills:
        victims.append(ledger.kill_one_running(workers, rng))
        ledger.fault(LEASE)  # its messages come back within the lease (Pub/Sub: no counts)
        workers[:] = [w for w in workers if w.pid != victims[-1]]
        workers.append(ledger.worker(QUEUE, 4, queue_lease_seconds=LEASE))  # ready soon
        time.sleep(0.5)  # spread the kills over the run (the next waits for a busy worker)
    feeder.join_sent(timeout)
    acc = ledger.wait_settled(ids, producer, QUEUE, timeout)
    elapsed = time.monotonic() - started
    events = ledger.events()
    at_once = [i for i in acc.duplicates if not _ran_in(events, i, victims)]
    logs = ledger.logs()
    fresh = logs.count("re-sent fresh (")
    print(
        f"\n{ledger.broker.name} SIGKILL x{kills}, N={n}: {acc.row()} in {elapsed:.1f}s "
        f"(of the duplicates, {len(at_once)} handed out twice at once by the broker; "
        f"{fresh} deliveries re-sent fresh near the max receive count)"
    )

    assert acc.lost == [], f"LOST {len(acc.lost)}: {acc.lost[:20]}"
    assert acc.dead == {}, f"{acc.dead}\n{ledger.tracebacks}"
    assert acc.done_once + len(acc.duplicates) == n
    # Every duplicate is explained: one of its executions ran in a killed worker, or the broker
    # handed the message out again while a live worker still held its lease. moto's
    # ReceiveMessage checks and marks visibility without a lock, so two concurrent receives can
    # both take a message (SQS standard queues document occasional duplicates too); either
    # consumer may run it first, from its prefetch, so the order of the runs does not tell that
    # from a lease cloudq let lapse. The worker does: it logs a task it acknowledges after the
    # task's lease ran out. No duplicate may be one of those.
    for task_id in at_once:
        runs = [e for e in events if e[1] == task_id]
        assert f"task {task_id} finished" not in logs, f"{task_id} outlived its lease: {runs}"
    # The kills really interrupted tasks: some started in a victim and never finished there.
    starts, done = ledger.counts("start"), ledger.counts("done")
    interrupted = [i for i in ids if starts.get(i, 0) > done.get(i, 0)]
    assert interrupted, "no task was interrupted by the kills"
    for w in workers:
        assert w.alive(), w.log()
    fault = f"SIGKILL mid-task \N{MULTIPLICATION SIGN}{kills}, 3 workers"
    write_row(set_, ledger.broker.name, fault, acc, elapsed)


Event = tuple[str, str, int, int, int]


def _ran_in(events: list[Event], task_id: str, pids: list[int]) -> bool:
    return any(e[1] == task_id and e[4] in pids for e in events)


@pytest.mark.parametrize("ledger", BROKERS, indirect=True)  # LocalStack's SQS too
def test_sigkill_mid_task_repeatedly_loses_nothing(ledger: Ledger) -> None:
    n, seconds, timeout = SIGKILL_RUNS[ledger.broker.name]
    _kill_mid_task(ledger, n=n, kills=5, seconds=seconds, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(2000)
@SLOW
def test_sigkill_mid_task_repeatedly_loses_nothing_10k(ledger: Ledger) -> None:
    _kill_mid_task(ledger, n=10_000, kills=40, seconds=0.05, timeout=1800, set_="slow")


def test_sigterm_during_load_finishes_running_releases_prefetched(ledger: Ledger) -> None:
    started = time.monotonic()
    lease = 60  # long: a prefetched message coming back soon can only be a release
    n = 80
    producer = ledger.producer(queue_lease_seconds=lease)
    producer.ensure_queue(QUEUE)
    first = ledger.worker(QUEUE, 2, prefetch=6, queue_lease_seconds=lease)
    first.wait_ready()
    ids = ledger.send(producer, "ledger.work", n, QUEUE, 0.1)
    wait_for(lambda: len(ledger.counts("done")) >= 10, 30, "10 tasks done", ledger.logs)
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait_exit(30) == 0, first.log()
    released = [int(m.group(1)) for m in first.find(r"released (\d+) prefetched message")]
    done_by_first = {t for e, t, _, _, p in ledger.events() if e == "done" and p == first.pid}
    started_by_first = {t for e, t, _, _, p in ledger.events() if e == "start" and p == first.pid}
    assert started_by_first == done_by_first, "SIGTERM must let running tasks finish"

    second = ledger.worker(QUEUE, 4, queue_lease_seconds=lease)
    second.wait_ready()
    begun = time.monotonic()
    # Well under the 60 s lease: only possible if the prefetched messages were released.
    acc = ledger.wait_settled(ids, producer, QUEUE, 40)
    rest = time.monotonic() - begun
    print(f"\n{ledger.broker.name} SIGTERM: {acc.row()}; released {released}; rest in {rest:.1f}s")
    assert acc.lost == []
    assert acc.duplicates == {}, "a task that had finished ran again"
    assert acc.done_once == n
    assert released and released[0] > 0, first.log()
    write_row("ci", ledger.broker.name, "SIGTERM during load", acc, time.monotonic() - started)
