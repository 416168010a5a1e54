"""The reliability ledger app (``cloudq -A tests.apps.ledger_app worker ...``).

Every task writes to a Redis ledger whose URL and run key it gets as arguments, so the worker
subprocesses need nothing but the ``CLOUDQ_*`` broker settings. Per run ``<run>``:

- ``<run>:start`` (hash): task id -> executions started;
- ``<run>:done`` (hash): task id -> executions finished (the task body returned);
- ``<run>:log`` (list): ``"<event> <id> <attempt> <delivery count> <pid>"`` per event.

``ledger.work_once`` (idempotent) exists where a result backend is configured.

Poison tasks (always raise, crash the pool child, exceed the hard time limit) retry on their
own error with a short backoff, so they reach the dead-letter queue after ``max_retries``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis

from cloudq import App
from cloudq.errors import TimeLimitExceeded, WorkerLostError

POISON_MAX_RETRIES = 2
_local = threading.local()


def _redis(url: str) -> redis.Redis:
    """A client per thread, on RESP2: redis-py 8.1 shares a pool across threads and its RESP3
    handshake (maintenance notifications) raced there: ``ValueError: I/O operation on closed
    file`` inside ``connect()``, seen under -c 4 (a harness failure, not a cloudq one)."""
    clients: dict[str, redis.Redis] = _local.__dict__.setdefault("clients", {})
    client = clients.get(url)
    if client is None:
        client = clients[url] = redis.Redis.from_url(url, protocol=2)
    return client


def record(url: str, run: str, event: str, request: Any) -> None:
    """One ledger event for the running task (pipelined: one round trip)."""
    task_id = str(request.id)
    line = f"{event} {task_id} {request.attempt} {request.delivery_count} {os.getpid()}"
    pipe = _redis(url).pipeline(transaction=True)
    pipe.hincrby(f"{run}:{event}", task_id, 1)
    pipe.rpush(f"{run}:log", line)
    pipe.execute()


def make_app(**settings: Any) -> App:
    """The ledger app: keyword settings over the ``CLOUDQ_*`` environment."""
    app = App("ledger_app", **settings)
    poison = {
        "bind": True,
        "autoretry_for": (RuntimeError, WorkerLostError, TimeLimitExceeded),
        "retry_backoff": 0.5,
        "max_retries": POISON_MAX_RETRIES,
    }

    @app.task(name="ledger.work", bind=True, time_limit=60)
    def work(self: Any, url: str, run: str, seconds: float = 0.0) -> int:
        """Record the start, sleep ``seconds``, record the end."""
        record(url, run, "start", self.request)
        if seconds:
            time.sleep(seconds)
        record(url, run, "done", self.request)
        return os.getpid()

    if app.conf.result_backend:  # idempotent=True needs one (refused at declaration without)

        @app.task(name="ledger.work_once", bind=True, idempotent=True, time_limit=3)
        def work_once(self: Any, url: str, run: str, seconds: float = 0.0) -> int:
            """``work``, idempotent. Also records ``rerun`` if it starts on an id whose success
            is already stored: what ``idempotent=True`` must prevent (a re-run after a crash
            between the body's end and the result's store is the documented gap, not this)."""
            stored = self.app.backend.get(self.request.id)
            if stored is not None and stored.state == "SUCCESS":
                record(url, run, "rerun", self.request)
            return int(work.run_with([url, run, seconds], {}))

    @app.task(name="ledger.boom", **poison)
    def boom(self: Any, url: str, run: str) -> None:
        """Always raises."""
        record(url, run, "start", self.request)
        raise RuntimeError(f"boom attempt {self.request.attempt}")

    @app.task(name="ledger.crash", **poison)
    def crash(self: Any, url: str, run: str) -> None:
        """Kills its own pool child (meant for ``-P processes``)."""
        record(url, run, "start", self.request)
        os._exit(13)

    @app.task(name="ledger.hang", time_limit=1, **poison)
    def hang(self: Any, url: str, run: str) -> None:
        """Sleeps far past its 1 s hard time limit."""
        record(url, run, "start", self.request)
        time.sleep(30)

    return app


app = make_app()
