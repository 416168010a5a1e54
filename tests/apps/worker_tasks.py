"""The tasks every provider's worker-subprocess tests use, on an app configured from ``CLOUDQ_*``.

Tasks leave their traces in marker files (one line per event, appended, with the pid and the
wall-clock time), so a test can count executions across worker processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from cloudq import App


def _append(marker: str, *fields: object) -> None:
    with open(marker, "a") as f:
        f.write(" ".join(str(x) for x in fields) + "\n")
        f.flush()
        os.fsync(f.fileno())


def make_worker_app(main: str, prefix: str, **settings: Any) -> App:
    """The test app named ``main``, its tasks named ``<prefix>.stamp`` and so on: keyword
    settings over the ``CLOUDQ_*`` environment."""
    app = App(main, **settings)

    @app.task(name=f"{prefix}.stamp")
    def stamp(marker: str, label: str = "") -> float:
        """Record when it ran; return that time."""
        now = time.time()
        _append(marker, "ran", os.getpid(), now, label)
        return now

    @app.task(
        name=f"{prefix}.flaky",
        bind=True,
        autoretry_for=(ConnectionError,),
        retry_backoff=1,
        max_retries=3,
    )
    def flaky(self: Any, marker: str, failures: int) -> int:
        """Fail ``failures`` times with ConnectionError, then succeed; return the attempt."""
        attempt = int(self.request.attempt)
        _append(marker, "attempt", os.getpid(), time.time(), attempt)
        if attempt <= failures:
            raise ConnectionError(f"attempt {attempt}: the service is down")
        return attempt

    @app.task(
        name=f"{prefix}.doomed",
        bind=True,
        autoretry_for=(RuntimeError,),
        retry_backoff=1,
        max_retries=1,
    )
    def doomed(self: Any, marker: str) -> None:
        """Always fails (retried once, then dead-lettered)."""
        attempt = int(self.request.attempt)
        _append(marker, "attempt", os.getpid(), time.time(), attempt)
        raise RuntimeError(f"doomed attempt {attempt}")

    @app.task(name=f"{prefix}.hold", bind=True, time_limit=60)
    def hold(self: Any, marker: str, seconds: float, first_only: bool = False) -> int:
        """Record the start (pid, delivery count), sleep, record the end.

        With ``first_only`` only the first delivery sleeps: a redelivery finishes at once.
        """
        count = int(self.request.delivery_count)
        _append(marker, "start", os.getpid(), time.time(), count)
        if not first_only or count == 1:
            time.sleep(seconds)
        _append(marker, "done", os.getpid(), time.time(), count)
        return count

    return app
