"""``celery.contrib.testing.worker.start_worker`` with Celery's signature.

A real worker in a thread for the ``with`` block, receiving when the block starts: Celery checks
that by sending its ping task; here the worker signals when its queues exist and its pool runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cloudq.testing import start_worker as _start_worker
from cloudq.testing.pytest_plugin import POOLS

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.worker import Worker

__all__ = ["start_worker"]


@contextmanager
def start_worker(
    app: App,
    concurrency: int = 1,
    pool: str = "solo",
    loglevel: str | int = "WARNING",
    logfile: str | None = None,
    perform_ping_check: bool = True,
    ping_task_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    queues: Sequence[str] | None = None,
    **kwargs: Any,
) -> Iterator[Worker]:
    """Celery's arguments; ``perform_ping_check`` and ``ping_task_timeout`` are accepted and
    need no ping task. ``pool``: ``solo``, ``threads`` or ``prefork`` (the processes pool)."""
    if pool not in POOLS:
        raise ValueError(f"pool {pool!r}: use one of {', '.join(POOLS)}")
    kind, _ = POOLS[pool]
    log = logging.getLogger("cloudq")
    level = log.level
    log.setLevel(loglevel if isinstance(loglevel, int) else loglevel.upper())
    handler = logging.FileHandler(logfile) if logfile else None
    if handler is not None:
        log.addHandler(handler)
    try:
        with _start_worker(
            app,
            queues=queues,
            concurrency=concurrency,
            pool=kind,  # type: ignore[arg-type]
            shutdown_timeout=shutdown_timeout,
            **kwargs,
        ) as worker:
            yield worker
    finally:
        log.setLevel(level)
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
