"""An importable app whose module connects Celery's signals, as a user's tasks.py does: the
processes pool imports it in each child, so the receivers run where the tasks run. Each
receiver appends ``<signal> <pid> <detail>`` to the file named by ``HOOKS_LOG``."""

from __future__ import annotations

import os
from typing import Any

from cloudq import App, signals

app = App("hooks", broker="memory://hooks-app", backend="memory://hooks-app")


def _log(line: str) -> None:
    path = os.environ.get("HOOKS_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{line}\n")


@app.task(name="hooks.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="hooks.fail")
def fail() -> None:
    raise ValueError("boom")


@signals.worker_process_init.connect
def process_init(sender: Any = None, **kw: Any) -> None:
    _log(f"worker_process_init {os.getpid()} -")


@signals.task_prerun.connect
def prerun(sender: Any = None, task_id: str = "", **kw: Any) -> None:
    _log(f"task_prerun {os.getpid()} {task_id}")


@signals.task_postrun.connect
def postrun(sender: Any = None, task_id: str = "", state: str = "", **kw: Any) -> None:
    _log(f"task_postrun {os.getpid()} {task_id}:{state}")


@signals.task_failure.connect
def failure(sender: Any = None, task_id: str = "", exception: Any = None, **kw: Any) -> None:
    _log(f"task_failure {os.getpid()} {task_id}:{type(exception).__name__}")
