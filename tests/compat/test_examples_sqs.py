"""Celery's documented examples on moto SQS with Redis results, served by a real ``cloudq
worker`` subprocess: each example copied with only its broker and backend URLs changed
(``ported.port``), the worker started as the docs start Celery's (``-A tasks``, ``-A proj``)."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.compat.ported import imported, port, served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Port = Callable[[str], Path]


@pytest.fixture
def ported(sqs_env: str, redis_url: str, tmp_path: Path) -> Port:
    prefix = f"c{uuid.uuid4().hex[:10]}-"

    def make(name: str) -> Path:
        return port(name, tmp_path, f"sqs://?prefix={prefix}", f"{redis_url}?prefix={prefix}")

    return make


def test_first_steps_on_sqs(ported: Port) -> None:
    """first-steps: ``celery -A tasks worker``, then ``add.delay(4, 4).get()``."""
    path = ported("first_steps")
    with imported(path), served(path, "tasks"):
        tasks = importlib.import_module("tasks")
        result = tasks.add.delay(4, 4)
        assert result.get(timeout=30) == 8
        assert result.successful()


def test_first_steps_routed_queue_on_sqs(ported: Port) -> None:
    """first-steps: ``task_routes = {'tasks.add': 'low-priority'}``, a worker on that queue."""
    path = ported("first_steps")
    with imported(path):
        tasks = importlib.import_module("tasks")
        tasks.app.config_from_object("routeconfig")
        with served(path, "tasks", "-Q", "low-priority"):
            result = tasks.add.delay(1, 1)
            assert result.get(timeout=30) == 2


def test_next_steps_project_on_sqs(ported: Port) -> None:
    """next-steps: ``celery -A proj worker`` with ``include=['proj.tasks']``; add, mul, xsum."""
    path = ported("next_steps")
    with imported(path), served(path, "proj"):
        tasks = importlib.import_module("proj.tasks")
        results = [tasks.add.delay(2, 2), tasks.mul.delay(3, 4), tasks.xsum.delay([1, 2, 3])]
        assert [r.get(timeout=30) for r in results] == [4, 12, 6]
        countdown = tasks.add.apply_async((10, 10), countdown=2)
        assert countdown.get(timeout=30) == 20
