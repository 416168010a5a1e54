"""The ``proj`` example of Celery's canvas guide on ``memory://``, with a worker thread."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cloudq.testing import start_worker

TIMEOUT = 10.0


@pytest.fixture
def proj(example: Callable[[str], Path]) -> Iterator[ModuleType]:
    """``proj.tasks``, its app on a broker and result store of its own, a worker running."""
    example("canvas")
    tasks = importlib.import_module("proj.tasks")
    importlib.import_module("integration_tasks")  # its shared tasks, on the same app
    name = uuid.uuid4().hex
    tasks.app.conf.broker_url = f"memory://{name}"
    tasks.app.conf.result_backend = f"memory://{name}"
    tasks.app.set_current()
    tasks.ERRORS.clear()
    with start_worker(tasks.app, ["default"], concurrency=4, poll_seconds=0.05):
        yield tasks
    tasks.app.close()
