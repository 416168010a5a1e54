"""An importable app for worker tests (the processes pool imports it in each child)."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from cloudq import App, SoftTimeLimitExceeded

BROKER = os.environ.get("POOL_APP_BROKER", "memory://pool-app")
app = App("pool", broker=BROKER, backend=BROKER, queue_lease_seconds=1.5)


@app.task(name="pid")
def pid() -> int:
    return os.getpid()


@app.task(name="soft", soft_time_limit=0.3, time_limit=5)
def soft() -> str:
    try:
        for _ in range(500):
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(name="sleep_hard", time_limit=0.5)
def sleep_hard() -> None:
    time.sleep(30)


@app.task(name="spin_hard", time_limit=0.5)
def spin_hard() -> None:
    while True:
        time.sleep(0.01)


@app.task(name="deaf_hard", time_limit=0.5)
def deaf_hard() -> None:
    """Ignores SIGALRM, like code stuck in C: only killing the child stops it."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(30)


@app.task(name="crash_once", bind=True, time_limit=20, retry_backoff=0.5)
def crash_once(self, marker: str) -> int:  # type: ignore[no-untyped-def]
    """First attempt: write our pid and block (the test SIGKILLs us). The retry: finish."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        time.sleep(20)
    return int(self.request.attempt)


@app.task(name="slow", time_limit=20)
def slow(seconds: float, marker: str) -> None:
    logging.getLogger("tests.pool_app").warning("slow task running")
    time.sleep(seconds)
    Path(marker).write_text("done")


@app.task(name="record")
def record(marker: str, label: str) -> None:
    with open(marker, "a") as f:
        f.write(label + "\n")


if os.environ.get("POOL_APP_SEED"):
    # For the SIGTERM test: the worker process itself holds the memory broker.
    seed_dir = os.environ["POOL_APP_SEED"]
    slow.delay(1.5, f"{seed_dir}/slow.done")
    for i in range(3):
        record.delay(f"{seed_dir}/fast.log", f"fast-{i}")
