"""A signed app for the trust-boundary tests (issue 26): the processes pool imports it in each
child, and a worker subprocess runs it with seeded messages (``TRUST_APP_SEED``)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from cloudq import App

BROKER = os.environ.get("TRUST_APP_BROKER", "memory://trust-app")
KEY = "trust-test-key"
app = App("trust", broker=BROKER, backend=BROKER, signing_keys=[KEY], queue_lease_seconds=1.5)


class Custom(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


RAISES: dict[str, type[BaseException]] = {
    "exit": SystemExit,
    "interrupt": KeyboardInterrupt,
    "custom": Custom,
}


@app.task(name="pid")
def pid() -> int:
    return os.getpid()


@app.task(name="raise_base")
def raise_base(kind: str) -> None:
    raise RAISES[kind]("from the task")


@app.task(name="raise_base_async")
async def raise_base_async(kind: str) -> None:
    await asyncio.sleep(0)
    raise RAISES[kind]("from the async task")


@app.task(name="exit_retried", autoretry_for=(SystemExit,), max_retries=2, retry_backoff=1)
def exit_retried() -> None:
    raise SystemExit(3)


@app.task(name="wait_marker", time_limit=20)
def wait_marker(started: str, seconds: float) -> int:
    """Say it started (a file), then sleep: the test signals the process meanwhile."""
    Path(started).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@app.task(name="die", time_limit=20)
def die() -> None:
    """The child process dies mid-task (a segfault, the OOM killer)."""
    os._exit(9)


@app.task(name="overrun", time_limit=0.2)
def overrun() -> None:
    """Stopped at its hard limit (in the child, by SIGALRM)."""
    time.sleep(5)


@app.task(name="slow", time_limit=20)
def slow(seconds: float, marker: str) -> None:
    logging.getLogger("tests.trust_app").warning("slow task running")
    time.sleep(seconds)
    Path(marker).write_text("done")


@app.task(name="ok")
def ok(x: int) -> int:
    return x * 2


if os.environ.get("TRUST_APP_SEED"):
    # For the signal tests: the worker process itself holds the memory broker. A BaseException
    # task of each kind first, then the slow task the test signals the worker during.
    seed_dir = os.environ["TRUST_APP_SEED"]
    for kind in RAISES:
        raise_base.delay(kind)
    slow.delay(2.0, f"{seed_dir}/slow.done")
