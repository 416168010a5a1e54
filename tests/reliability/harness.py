"""The ledger harness: send N tasks with known ids, run real workers, account for every id.

An id ends as exactly one of: done once, done more than once (a duplicate: at-least-once allows
it after a crash), dead-lettered (with the reason read back from the dead-letter queue), or LOST
(none of those: must never happen). Waits are on conditions with timeouts; every worker
subprocess is killed in ``Ledger.close`` whatever happens.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
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

APP_REF = "tests.apps.ledger_app"
REASON_ATTRIBUTE = "cloudq-dead-letter-reason"


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

    def __init__(self, broker_url: str, redis_url: str, prefix: str) -> None:
        self.prefix = prefix
        self.broker_url = broker_url
        self.redis_url = redis_url
        self.run = f"ledger-{uuid.uuid4().hex[:12]}"
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.workers: list[WorkerProcess] = []
        self.apps: list[App] = []
        self.dead_seen: dict[str, str] = {}
        self.foreign_dead: list[tuple[bytes, str]] = []
        self.tracebacks: dict[str, str] = {}

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
        **settings: Any,
    ) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")}
        env["PYTHONPATH"] = str(ROOT)
        for key, value in self.settings(**settings).items():
            env[f"CLOUDQ_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        args = ["-Q", queue, "-c", str(concurrency), "-P", pool, "-l", "info"]
        if prefetch is not None:
            args += ["--prefetch", str(prefetch)]
        proc = WorkerProcess.worker(APP_REF, args, env, f"worker-{len(self.workers) + 1}")
        self.workers.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)

    def close(self) -> None:
        workers, self.workers = self.workers, []
        apps, self.apps = self.apps, []
        try:
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.kill()  # every one first: a slow wait must not spare the others
            for w in workers:
                w.kill()
        finally:
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

    def collect_dead(self, app: App, queue: str) -> dict[str, str]:
        """Drain the dead-letter queue into ``dead_seen`` (id -> reason); return it."""
        dlq = dead_letter_queue_name(queue)
        while True:
            got = app.broker.receive(dlq, 10, 0.2, 60)
            if not got:
                return self.dead_seen
            for d in got:
                reason = d.attributes.get(REASON_ATTRIBUTE, "")
                try:
                    envelope = decode(d.body)
                    self.dead_seen[envelope.id] = reason
                    self.tracebacks[envelope.id] = envelope.headers.get(HEADER_ERROR_TRACEBACK, "")
                except EnvelopeError:
                    self.foreign_dead.append((d.body, reason))
            app.broker.ack(got)

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
            stats = app.broker.stats(queue)
            if stats.visible or stats.in_flight or stats.delayed:
                return None
            return self.account(ids, app, queue)

        def progress() -> str:
            acc = self.account(ids, app, queue)
            return f"{acc.row()}; lost so far: {acc.lost[:10]}\n{self.logs()}"

        return wait_for(probe, timeout, f"{len(ids)} tasks to settle", progress)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
