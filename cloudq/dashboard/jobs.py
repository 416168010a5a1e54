"""Long actions (redrive, purge) run in a thread; their page shows the progress until done."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from cloudq.logsafe import get_logger

logger = get_logger("cloudq.dashboard.jobs")

KEPT_JOBS = 50
"""Finished jobs kept for their pages; older ones are forgotten."""


@dataclass
class Job:
    id: str
    title: str
    user: str
    total: int | None
    done: int = 0
    finished: bool = False
    summary: str = ""
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.time)

    def advance(self, n: int) -> None:
        self.done += n


class Jobs:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, title: str, user: str, total: int | None, work: Callable[[Job], None]) -> Job:
        """Run ``work(job)`` in a thread; it advances ``job`` and sets its summary."""
        job = Job(uuid.uuid4().hex, title, user, total)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT_JOBS:
                self._jobs.popitem(last=False)

        def run() -> None:
            try:
                work(job)
            except Exception as exc:  # shown on the job's page, and logged with its traceback
                job.error = f"{type(exc).__name__}: {exc}"
                logger.exception("%s (by %s) failed", title, user)
            finally:
                job.finished = True

        threading.Thread(target=run, name=f"cloudq-dashboard-job-{job.id[:8]}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)
