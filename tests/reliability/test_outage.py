"""The broker goes away mid-run and comes back; so does the result store.

Broker outage: the producer and the workers reach the broker through a ``Forwarder`` that the
test cuts (connections refused, open ones reset) and restores on the same port. The emulators
keep their messages in memory, so stopping one would lose what a real cloud queue keeps through
an outage; with the forwarder the broker keeps running behind the cut. What cloudq does:

- ``delay()`` during the outage raises ``cloudq.errors.BrokerError`` naming the operation and
  the queue, after the SDK's own retries (botocore's ``AWS_MAX_ATTEMPTS``; Pub/Sub's retries
  within ``pubsub://...&timeout=``, 30 s by default; the Service Bus SDK's one retry). Nothing
  is buffered: a ``delay()`` that returned had its message accepted by the broker, and one that
  raised was not sent (here: the connection was refused, so it cannot have been);
- workers log ``receive failed; retrying in N s`` and back off (doubling from 0.5 s up to 30 s,
  with jitter: each pause is drawn from the upper half of the step), and resume by themselves;
  acknowledgements that failed meanwhile are logged and the messages come back after their
  lease (at-least-once: duplicates, only among tasks that were in a worker's hands).

Result store outage (a ``redis-server`` of the test's own, stopped and started again on the same
port, empty, as after a crash without persistence): tasks keep running and are acknowledged;
storing a result fails, is logged (``could not store result of task <id> (SUCCESS)``) and is
not retried: those results are missing (``AsyncResult.state`` stays ``PENDING``). The worker's
heartbeat logs the failure once and its recovery. ``delay()`` does not touch the result store.
Once the store is back, results are stored again without a restart.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cloudq import State
from cloudq.errors import BrokerError
from tests.fixtures.servers import free_port, stop_process
from tests.processes import wait_for
from tests.reliability.figures import write_row
from tests.reliability.harness import Ledger
from tests.reliability.proxy import Forwarder
from tests.tools import missing_tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

QUEUE = "outage"
LEASE = 3
SECONDS = 0.05
BEFORE, AFTER, REFUSED = 100, 50, 3
BACKOFF = re.compile(r"receive failed; retrying in (\d+\.\d+)s")


def test_broker_outage_mid_run_loses_nothing_delay_accepted(
    outage_ledger: tuple[Ledger, Forwarder],
) -> None:
    started = time.monotonic()
    ledger, forwarder = outage_ledger
    name = ledger.broker.name
    producer = ledger.producer(queue_lease_seconds=LEASE)
    producer.ensure_queue(QUEUE)
    workers = [ledger.worker(QUEUE, 4, queue_lease_seconds=LEASE) for _ in range(2)]
    for w in workers:
        w.wait_ready()
    task = producer.tasks["ledger.work"]
    tag = uuid.uuid4().hex[:6]

    refused: dict[str, tuple[float, str]] = {}

    def delay(task_id: str) -> str | None:
        """The id if ``delay()`` returned (the broker has the message), None if it raised."""
        began = time.monotonic()
        try:
            task.apply_async((ledger.redis_url, ledger.run, SECONDS), queue=QUEUE, task_id=task_id)
        except BrokerError as exc:
            refused[task_id] = (time.monotonic() - began, str(exc))
            return None
        refused.pop(task_id, None)  # sent again, and accepted this time
        return task_id

    before = [delay(f"before-{i:04d}-{tag}") for i in range(BEFORE)]
    assert None not in before and not refused, refused
    wait_for(lambda: len(ledger.counts("done")) >= 20, 30, "20 tasks done", ledger.logs)

    marks = [len(w.lines) for w in workers]
    forwarder.cut()
    cut_at = time.monotonic()
    # Side by side, as from several request threads: each waits out the SDK's retries.
    with ThreadPoolExecutor(REFUSED) as pool:
        tried = list(pool.map(delay, [f"refused-{i:04d}-{tag}" for i in range(REFUSED)]))
    assert tried == [None] * REFUSED, "delay() returned during the outage"
    during = dict(refused)
    for w, mark in zip(workers, marks, strict=True):
        w.wait_log(BACKOFF.pattern, 30, count=3, start=mark)
    forwarder.restore()
    outage = time.monotonic() - cut_at

    restored_at = ledger.redis.llen(f"{ledger.run}:log")
    # An application retries a delay() that raised: the first may still fail while the client
    # reconnects (gRPC waits out its own reconnect backoff).
    after: list[str | None] = [
        wait_for(lambda: delay(f"after-0000-{tag}"), 30, "delay() to get through again")
    ]
    back_in = time.monotonic() - cut_at - outage
    after += [delay(f"after-{i:04d}-{tag}") for i in range(1, AFTER)]

    def resumed() -> set[int] | None:
        """Every worker has run a task since the restore (while they have not, one more
        task is sent now and then: the backlog may all go to the first one back)."""
        pids = {pid for e, _, _, _, pid in ledger.events()[restored_at:] if e == "done"}
        if all(w.pid in pids for w in workers):
            return pids
        if len(after) < 4 * AFTER and ledger.counts("done").keys() >= set(after):
            after.append(delay(f"after-{len(after):04d}-{tag}"))
        return None

    wait_for(resumed, 60, "every worker to run tasks again", ledger.logs)
    assert None not in after, refused
    accepted = [i for i in [*before, *after] if i is not None]
    acc = ledger.wait_settled(accepted, producer, QUEUE, 90)
    pauses = [
        [float(m.group(1)) for m in w.find(BACKOFF.pattern, mark)]
        for w, mark in zip(workers, marks, strict=True)
    ]
    slowest = max(seconds for seconds, _ in during.values())
    print(
        f"\n{name} broker outage {outage:.1f}s: {acc.row()}; delay() refused {len(during)} "
        f"(raised within {slowest:.1f}s), through again {back_in:.1f}s after the restore; "
        f"backoff pauses {pauses}"
    )
    print(f"  delay() during the outage: {next(iter(during.values()))[1][:200]}")

    assert acc.lost == [], f"LOST {len(acc.lost)}: {acc.lost[:20]}"
    assert acc.dead == {}, acc.dead
    assert not set(acc.duplicates) & set(after), "a task sent after the outage ran twice"
    for _, message in during.values():
        assert QUEUE in message, message  # names the queue (and the operation)
    done = ledger.counts("done")
    assert not set(during) & set(done), "a delay() that raised was sent after all"
    for w in workers:  # the same processes: resumed on their own, without a restart
        assert w.alive(), w.log()
    # Backed off: each worker waited more than once, longer each time, with jitter (a pause
    # below its step: 0.5 s doubling), never more than the 30 s cap.
    steps = [min(0.5 * 2**k, 30.0) for k in range(20)]
    flat = [p for ps in pauses for p in ps]
    for ps in pauses:
        assert len(ps) >= 2 and ps[-1] > ps[0], pauses
    assert max(flat) <= 30.0
    fault = f"broker cut {outage:.1f} s mid-run; {len(during)} `delay()`s refused"
    write_row("ci", name, fault, acc, time.monotonic() - started)
    assert any(p < 0.95 * steps[k] for ps in pauses for k, p in enumerate(ps)), pauses


# --- the result store ---------------------------------------------------------------------------
class RedisProcess:
    """A ``redis-server`` of the test's own without persistence, stopped and started again on
    the same port (the session's server holds the ledger and must stay up)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing_tool("redis-server is not on PATH (apt-get install -y redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir)]
        args += ["--logfile", str(self.workdir / "redis.log")]
        proc = self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        wait_for(lambda: proc.poll() is not None or self._pong(), 15, "redis-server to answer")
        assert proc.poll() is None, (self.workdir / "redis.log").read_text()[-2000:]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def test_result_store_down_tasks_still_run_and_nothing_is_lost(
    sqs_ledger: Ledger, tmp_path: Path
) -> None:
    ledger = sqs_ledger
    store = RedisProcess(tmp_path)
    store.start()
    try:
        _result_store_outage(ledger, store)
    finally:
        store.stop()


def _result_store_outage(ledger: Ledger, store: RedisProcess) -> None:
    started = time.monotonic()
    n = 40
    settings: dict[str, Any] = {"result_backend": store.url, "queue_lease_seconds": LEASE}
    producer = ledger.producer(**settings)
    producer.ensure_queue(QUEUE)
    beat = ["--heartbeat-interval", "1"]  # the heartbeat's failure and recovery show sooner
    workers = [ledger.worker(QUEUE, 4, extra_args=beat, **settings) for _ in range(2)]
    for w in workers:
        w.wait_ready()
    task = producer.tasks["ledger.work"]
    tag = uuid.uuid4().hex[:6]

    def delay(phase: str) -> list[str]:
        ids = [f"{phase}-{i:04d}-{tag}" for i in range(n)]
        for i in ids:
            task.apply_async((ledger.redis_url, ledger.run, SECONDS), queue=QUEUE, task_id=i)
        return ids

    def stored(ids: list[str]) -> list[str] | None:
        return ids if all(producer.AsyncResult(i).state == State.SUCCESS for i in ids) else None

    up = delay("up")
    wait_for(lambda: stored(up), 30, "the results before the outage", ledger.logs)

    marks = [len(w.lines) for w in workers]
    store.stop()
    down = delay("down")  # delay() needs no result store
    wait_for(lambda: ledger.counts("done").keys() >= set(down), 30, "tasks run", ledger.logs)

    def logged() -> set[str] | None:
        failed = {
            m.group(1)
            for w, mark in zip(workers, marks, strict=True)
            for m in w.find(r"could not store result of task (\S+) \(SUCCESS\)", mark)
        }
        return failed if failed >= set(down) else None

    failed = wait_for(logged, 15, "every lost result to be logged", ledger.logs)
    for w, mark in zip(workers, marks, strict=True):
        w.wait_log(r"heartbeat to the state store failed", 15, start=mark)

    store.start()  # same port, empty: the results written during the outage are gone
    again = delay("again")
    wait_for(lambda: stored(again), 30, "results stored again after the restart", ledger.logs)
    for w, mark in zip(workers, marks, strict=True):
        w.wait_log(r"heartbeat to the state store works again", 15, start=mark)
    acc = ledger.wait_settled([*up, *down, *again], producer, QUEUE, 60)
    missing = [i for i in down if producer.AsyncResult(i).state == State.PENDING]
    print(
        f"\nsqs result store down: {acc.row()}; results lost and logged {len(failed & set(down))}"
        f" of {len(down)} run during the outage; stored after the restart {len(again)}/{n}"
    )

    assert acc.lost == [] and acc.dead == {}
    assert acc.duplicates == {}, "acknowledged although the result could not be stored"
    assert missing == down, "a result written during the outage (the store came back empty)"
    for w in workers:
        assert w.alive(), w.log()
    fault = "Redis results: store down, restarted empty"
    write_row("ci", "sqs", fault, acc, time.monotonic() - started)
