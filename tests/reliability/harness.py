"""The ledger harness: send N tasks with known ids, run real workers, account for every id.

An id ends as exactly one of: done once, done more than once (a duplicate: at-least-once allows
it after a crash), dead-lettered (with the reason read back from the dead-letter queue), or LOST
(none of those: must never happen). Waits are on conditions with timeouts; every worker
subprocess is killed in ``Ledger.close`` whatever happens.

The broker is a ``LedgerBroker``: its URL, what its worker subprocesses need in their
environment, whether ``stats()`` can say "the queue is empty", and its own dead-letter reader
(each provider keeps dead letters, and their reasons, in its own way).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from cloudq import App
from cloudq.adapters.base import dead_letter_queue_name
from cloudq.envelope import HEADER_ERROR_TRACEBACK, decode
from cloudq.errors import EnvelopeError
from tests.apps import ledger_app
from tests.processes import ROOT, wait_for
from tests.processes import LoggedProcess as WorkerProcess

__all__ = [
    "Account",
    "Feeder",
    "Ledger",
    "LedgerBroker",
    "PubSubDeadLetters",
    "QueueDeadLetters",
    "ServiceBusDeadLetters",
    "WorkerProcess",
    "wait_for",
]

APP_REF = "tests.apps.ledger_app"
FEED_CHUNK = 50
REASON_ATTRIBUTE = "cloudq-dead-letter-reason"
"""Where every adapter puts cloudq's dead-letter reason (a message attribute / property)."""
PUBSUB_NATIVE_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
"""Set by Pub/Sub on a message its own dead-letter policy moved (no cloudq reason then)."""

DeadLetter = tuple[bytes, str]
"""A dead letter's body and its reason."""


# --- dead-letter readers: one per provider --------------------------------------------------
class QueueDeadLetters:
    """SQS: the queue ``<name>-dlq`` (cloudq's dead letters carry the reason attribute; SQS's
    own redrive after ``maxReceiveCount`` carries none)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def _reason(self, attributes: dict[str, str]) -> str:
        return attributes.get(REASON_ATTRIBUTE) or "redriven by the broker (no cloudq reason)"

    def drain(self, queue: str) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        dlq = dead_letter_queue_name(queue)
        while True:
            got = self.app.broker.receive(dlq, 10, 0.2, 60)
            if not got:
                return out
            out += [(d.body, self._reason(d.attributes)) for d in got]
            self.app.broker.ack(got)

    def close(self) -> None:
        pass


class PubSubDeadLetters(QueueDeadLetters):
    """Pub/Sub: the dead-letter topic's subscription ``<name>-dlq``. cloudq publishes there
    with the reason attribute; Pub/Sub's own dead-letter policy (``max_delivery_attempts``)
    forwards the message as it was, with ``CloudPubSubDeadLetterSourceDeliveryCount``."""

    def _reason(self, attributes: dict[str, str]) -> str:
        if REASON_ATTRIBUTE in attributes:
            return attributes[REASON_ATTRIBUTE]
        count = attributes.get(PUBSUB_NATIVE_COUNT)
        if count:
            return f"dead-lettered by Pub/Sub after {count} delivery attempts"
        return "no reason attribute"


class ServiceBusDeadLetters(QueueDeadLetters):
    """Service Bus: ``<name>-dlq`` (cloudq's dead letters, and native ones forwarded there by
    ``ForwardDeadLetteredMessagesTo``; the adapter turns ``DeadLetterReason`` /
    ``DeadLetterErrorDescription`` into the reason attribute), plus the ``$DeadLetterQueue``
    sub-queues of ``<name>`` and ``<name>-dlq``: a native dead letter that was not forwarded
    (forwarding missing or refused) waits there, and is read with the SDK, its reason from
    ``DeadLetterReason`` / ``DeadLetterErrorDescription``. The sub-queues are opened only when
    the administration API counts a message in one (opening and closing AMQP links costs
    seconds per test)."""

    def __init__(self, app: App, connection: str, admin_connection: str | None) -> None:
        super().__init__(app)
        from azure.servicebus.management import ServiceBusAdministrationClient

        self._connection = connection
        self._admin = ServiceBusAdministrationClient.from_connection_string(
            admin_connection or connection
        )
        self._client: Any = None
        self._receivers: dict[str, Any] = {}

    def _subqueue(self, queue: str) -> list[DeadLetter]:
        name = self.app.broker.physical_name(queue)  # type: ignore[attr-defined]
        if not self._admin.get_queue_runtime_properties(name).dead_letter_message_count:
            return []
        from azure.servicebus import ServiceBusClient, ServiceBusSubQueue

        if self._client is None:
            self._client = ServiceBusClient.from_connection_string(self._connection)
        receiver = self._receivers.get(queue)
        if receiver is None:
            receiver = self._client.get_queue_receiver(
                name, sub_queue=ServiceBusSubQueue.DEAD_LETTER, prefetch_count=0
            )
            receiver.__enter__()  # open the link now: a short receive would time out opening it
            self._receivers[queue] = receiver
        out: list[DeadLetter] = []
        while True:
            got = receiver.receive_messages(max_message_count=20, max_wait_time=0.2)
            if not got:
                return out
            for message in got:
                reason = message.dead_letter_reason or "no DeadLetterReason"
                if message.dead_letter_error_description:
                    reason = f"{reason}: {message.dead_letter_error_description}"
                out.append((b"".join(message.body), f"$DeadLetterQueue: {reason}"))
                receiver.complete_message(message)

    def drain(self, queue: str) -> list[DeadLetter]:
        dlq = dead_letter_queue_name(queue)
        return [*super().drain(queue), *self._subqueue(queue), *self._subqueue(dlq)]

    def close(self) -> None:
        # Side by side: each SDK handler joins its keep-alive thread on close (about a second).
        closing = [threading.Thread(target=r.close, daemon=True) for r in self._receivers.values()]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join(10)
        if self._client is not None:
            self._client.close()
        self._admin.close()


@dataclass(frozen=True)
class LedgerBroker:
    """One broker the ledger runs on."""

    name: str
    url: str
    env: dict[str, str] = field(default_factory=dict)
    """Environment the worker subprocesses need besides the ``CLOUDQ_*`` settings."""
    counts: bool = True
    """``stats()`` counts visible, in-flight and delayed messages (not Pub/Sub)."""
    dead_letters: Callable[[App], QueueDeadLetters] = QueueDeadLetters


@dataclass
class Account:
    """Where every sent id ended up."""

    sent: int
    done_once: int
    duplicates: dict[str, int]  # id -> executions beyond the first
    dead: dict[str, str]  # id -> dead-letter reason
    lost: list[str]
    extra_dead: list[str] = field(default_factory=list)  # dead letters that are not ours

    @property
    def duplicate_runs(self) -> int:
        return sum(self.duplicates.values())

    def row(self) -> str:
        return (
            f"sent={self.sent} done_once={self.done_once} duplicates={len(self.duplicates)} "
            f"(extra runs {self.duplicate_runs}) dead_lettered={len(self.dead)} "
            f"lost={len(self.lost)}"
        )


class Ledger:
    """One test's queues (own broker prefix), Redis ledger key, producer and workers."""

    def __init__(self, broker: LedgerBroker, redis_url: str) -> None:
        self.broker = broker
        self.broker_url = broker.url
        self.redis_url = redis_url
        self.run = f"ledger-{uuid.uuid4().hex[:12]}"
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.workers: list[WorkerProcess] = []
        self.apps: list[App] = []
        self.dead_seen: dict[str, str] = {}
        self.foreign_dead: list[tuple[bytes, str]] = []
        self.tracebacks: dict[str, str] = {}
        self._readers: dict[int, QueueDeadLetters] = {}
        self.feeders: list[Feeder] = []
        self.quiet_after = 0.0
        """Brokers without counts: monotonic time before which messages may still come back
        (a killed worker's lease); see ``fault``."""

    # --- setup --------------------------------------------------------------------------
    def settings(self, **settings: Any) -> dict[str, Any]:
        return {"broker_url": self.broker_url, "worker_poll_seconds": 1, **settings}

    def producer(self, **settings: Any) -> App:
        app = ledger_app.make_app(**self.settings(**settings))
        self.apps.append(app)
        return app

    def worker(
        self,
        queue: str,
        concurrency: int = 4,
        pool: str = "threads",
        prefetch: int | None = None,
        extra_args: Sequence[str] = (),
        **settings: Any,
    ) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")}
        env.update(self.broker.env)
        env["PYTHONPATH"] = str(ROOT)
        for key, value in self.settings(**settings).items():
            env[f"CLOUDQ_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        args = ["-Q", queue, "-c", str(concurrency), "-P", pool, "-l", "info"]
        if prefetch is not None:
            args += ["--prefetch", str(prefetch)]
        args += extra_args
        proc = WorkerProcess.worker(APP_REF, args, env, f"worker-{len(self.workers) + 1}")
        self.workers.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)

    def close(self) -> None:
        workers, self.workers = self.workers, []
        apps, self.apps = self.apps, []
        readers, self._readers = self._readers, {}
        for feeder in self.feeders:
            feeder.stop()
        try:
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.kill()  # every one first: a slow wait must not spare the others
            for w in workers:
                w.kill()
        finally:
            for reader in readers.values():
                try:
                    reader.close()
                except Exception as exc:  # closing must not hide the test's own failure
                    print(f"closing the dead-letter reader: {exc!r}")
            for app in apps:
                app.close()
            keys = list(self.redis.scan_iter(f"{self.run}:*"))
            if keys:
                self.redis.delete(*keys)
            self.redis.close()

    # --- producing ----------------------------------------------------------------------
    def send(
        self, app: App, task: str, n: int, queue: str, *args: Any, prefix: str = "t"
    ) -> list[str]:
        """Send ``n`` tasks with known ids in batches; return the ids."""
        ids = [f"{prefix}-{i:05d}-{uuid.uuid4().hex[:6]}" for i in range(n)]
        t = app.tasks[task]
        envelopes = [
            t.envelope([self.redis_url, self.run, *args], {}, queue=queue, task_id=i) for i in ids
        ]
        app.send_envelopes(envelopes)
        return ids

    def feed(self, app: App, task: str, n: int, queue: str, *args: Any, ahead: int = 300) -> Feeder:
        """Send ``n`` tasks from a thread, keeping at most ``ahead`` of them sent and not yet
        done: moto's SQS slows down as a queue gets deep (2,000 sent at once took 17 s to send
        and longer to drain). The ids are known at once; ``Feeder.join`` waits for the rest."""
        feeder = Feeder(self, app, task, n, queue, args, ahead)
        self.feeders.append(feeder)
        feeder.start()
        return feeder

    # --- observing ----------------------------------------------------------------------
    def counts(self, event: str) -> dict[str, int]:
        found = self.redis.hgetall(f"{self.run}:{event}")
        return {_text(k): int(v) for k, v in found.items()}

    def events(self) -> list[tuple[str, str, int, int, int]]:
        """(event, id, attempt, delivery count, pid) for every ledger line, in order."""
        out = []
        for line in self.redis.lrange(f"{self.run}:log", 0, -1):
            event, task_id, attempt, count, pid = _text(line).split(" ")
            out.append((event, task_id, int(attempt), int(count), int(pid)))
        return out

    def kill_one_running(self, workers: Sequence[WorkerProcess], rng: random.Random) -> int:
        """SIGKILL a worker that is running a task right now (started, not done, by its pid, per
        the ledger); return its pid once it is dead."""

        def running_victim() -> WorkerProcess | None:
            busy: dict[int, int] = {}
            for event, _, _, _, pid in self.events():
                if event in ("start", "done"):
                    busy[pid] = busy.get(pid, 0) + (1 if event == "start" else -1)
            live = [w for w in workers if w.alive() and busy.get(w.pid, 0) > 0]
            return rng.choice(live) if live else None

        victim = wait_for(running_victim, 30, "a worker mid-task", self.logs)
        victim.proc.send_signal(signal.SIGKILL)
        assert victim.wait_exit(10) == -signal.SIGKILL
        return victim.pid

    def fault(self, lease: float) -> None:
        """Note a fault whose messages come back within ``lease`` (a killed worker's)."""
        self.quiet_after = max(self.quiet_after, time.monotonic() + lease + 1.0)

    def collect_dead(self, app: App, queue: str) -> dict[str, str]:
        """Drain the dead-letter queue into ``dead_seen`` (id -> reason); return it."""
        reader = self._readers.get(id(app))
        if reader is None:
            reader = self._readers[id(app)] = self.broker.dead_letters(app)
        for body, reason in reader.drain(queue):
            try:
                envelope = decode(body)
            except EnvelopeError:
                self.foreign_dead.append((body, reason))
                continue
            self.dead_seen[envelope.id] = reason
            self.tracebacks[envelope.id] = envelope.headers.get(HEADER_ERROR_TRACEBACK, "")
        return self.dead_seen

    def account(self, ids: Sequence[str], app: App, queue: str) -> Account:
        done = self.counts("done")
        dead = self.collect_dead(app, queue)
        once = sum(1 for i in ids if done.get(i) == 1)
        dups = {i: done[i] - 1 for i in ids if done.get(i, 0) > 1}
        mine = {i: dead[i] for i in ids if i in dead}
        lost = [i for i in ids if i not in done and i not in dead]
        extra = [i for i in dead if i not in set(ids)]
        return Account(len(ids), once, dups, mine, lost, extra)

    def wait_settled(
        self, ids: Sequence[str], app: App, queue: str, timeout: float, expect_dead: int = 0
    ) -> Account:
        """Wait until every id is done or dead-lettered and the queue is empty."""
        id_set = set(ids)

        def probe() -> Account | None:
            done = self.counts("done")
            dead = self.collect_dead(app, queue)
            if sum(1 for i in id_set if i in done or i in dead) < len(ids):
                return None
            if not self.empty(app, queue):
                return None
            return self.account(ids, app, queue)

        def progress() -> str:
            acc = self.account(ids, app, queue)
            return f"{self.logs()[-12000:]}\n{self.diagnose(acc, app, queue)}"

        return wait_for(probe, timeout, f"{len(ids)} tasks to settle", progress)

    def diagnose(self, acc: Account, app: App, queue: str) -> str:
        """What a failed settle leaves to go on: the counts, and for each missing id its ledger
        events, the worker log lines that name it and the dead letters nobody could decode
        (written last: ``wait_for`` keeps the tail of a long failure message)."""
        lines = [f"{acc.row()}; lost so far: {acc.lost[:10]}"]
        if self.broker.counts:
            lines.append(f"queue {queue}: {app.broker.stats(queue)}")
        logs = self.logs().splitlines()
        events = self.events()
        for task_id in acc.lost[:5]:
            lines.append(f"{task_id}: events {[e for e in events if e[1] == task_id]}")
            lines.extend(f"    {line}" for line in logs if task_id in line)
        if self.foreign_dead:
            lines.append(f"undecodable dead letters: {self.foreign_dead[:5]}")
        return "\n".join(lines)

    def empty(self, app: App, queue: str) -> bool:
        """Nothing left to run on ``queue``: by its counts, or (Pub/Sub, which has none) once
        every lease of a fault has run out, no ledger event came during a pull that found
        nothing (what a pull finds is handed back at once)."""
        if self.broker.counts:
            stats = app.broker.stats(queue)
            return not (stats.visible or stats.in_flight or stats.delayed)
        if time.monotonic() < self.quiet_after:
            return False
        before = self.redis.llen(f"{self.run}:log")
        found = app.broker.receive(queue, 10, 0, 30)
        if found:
            app.broker.release(found, 0)
            return False
        return bool(self.redis.llen(f"{self.run}:log") == before)


class Feeder(threading.Thread):
    """``Ledger.feed``: sends in chunks while the ledger's done count keeps up."""

    def __init__(
        self,
        ledger: Ledger,
        app: App,
        task: str,
        n: int,
        queue: str,
        args: Sequence[Any],
        ahead: int,
    ) -> None:
        super().__init__(name="ledger-feeder", daemon=True)
        self.ledger = ledger
        self.app = app
        self.ids = [f"t-{i:05d}-{uuid.uuid4().hex[:6]}" for i in range(n)]
        t = app.tasks[task]
        self._envelopes = [
            t.envelope([ledger.redis_url, ledger.run, *args], {}, queue=queue, task_id=i)
            for i in self.ids
        ]
        self.ahead = ahead
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            done = f"{self.ledger.run}:done"
            while self.sent < len(self._envelopes) and not self._halt.is_set():
                if self.sent - int(self.ledger.redis.hlen(done)) >= self.ahead:
                    self._halt.wait(0.05)
                    continue
                chunk = self._envelopes[self.sent : self.sent + FEED_CHUNK]
                self.app.send_envelopes(chunk)
                self.sent += len(chunk)
        except BaseException as exc:  # reported by join, in the test's thread
            self.error = exc

    def join_sent(self, timeout: float) -> None:
        """Wait until everything is sent; raise what the sending raised."""
        self.join(timeout)
        if self.error is not None:
            raise self.error
        assert not self.is_alive(), f"only {self.sent} of {len(self.ids)} sent in {timeout}s"

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
