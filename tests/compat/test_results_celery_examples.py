"""Celery's result examples, changed only in the import and the broker URL (issue 24), each on
``memory://`` with a worker thread: ``t/integration/test_tasks.py`` (its tasks are in
``examples/integration/tasks.py``), the next-steps guide's result calls and the canvas guide's
group results. Calls and assertions are Celery's; only ``celery.exceptions`` reads
``cloudq.exceptions``, and ``timeout=`` is longer where the docs' 1 s races a loaded machine.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cloudq.exceptions
from cloudq import App, group, shared
from cloudq.testing import start_worker

Example = Callable[[str], Path]


@pytest.fixture
def manager(example: Example) -> Iterator[Any]:
    """Celery's ``manager`` fixture: an app with a worker; yields the example's tasks module."""
    name = f"results-examples-{uuid.uuid4().hex[:8]}"
    app = App(name, broker=f"memory://{name}", backend=f"memory://{name}")
    example("integration")
    before = len(shared._shared)
    tasks = importlib.import_module("tasks")
    try:
        with start_worker(app, queues=["default"], concurrency=4):
            yield tasks
    finally:  # the example's shared tasks would register with every app made after this test
        with shared._lock:
            del shared._shared[before:]


def test_basic_task(manager: Any) -> None:
    """t/integration/test_tasks.py::test_tasks::test_basic_task"""
    add = manager.add
    results = []
    # Tests calling task only with args
    for i in range(10):
        results.append([i + i, add.delay(i, i)])
    for expected, result in results:
        value = result.get(timeout=10)
        assert value == expected
        assert result.status == "SUCCESS"
        assert result.ready() is True
        assert result.successful() is True

    results = []
    # Tests calling task with args and kwargs
    for i in range(10):
        results.append([3 * i, add.delay(i, i, z=i)])
    for expected, result in results:
        value = result.get(timeout=10)
        assert value == expected
        assert result.status == "SUCCESS"
        assert result.ready() is True
        assert result.successful() is True


def test_timeout(manager: Any) -> None:
    """t/integration/test_tasks.py::test_tasks::test_timeout"""
    result = manager.sleeping.delay(10)
    with pytest.raises(cloudq.exceptions.TimeoutError):
        result.get(timeout=5)


def test_fail(manager: Any) -> None:
    """t/integration/test_tasks.py::test_tasks::test_fail: the task's own exception class."""
    result = manager.fail.delay()
    with pytest.raises(manager.ExpectedException):
        result.get(timeout=5)
    assert result.status == "FAILURE"
    assert result.ready() is True
    assert result.failed() is True
    assert result.successful() is False
    assert result.result == manager.ExpectedException("Task expected to fail")


def test_revoked(manager: Any) -> None:
    """t/integration/test_tasks.py::test_tasks::test_revoked"""
    # Fill the queue with tasks to fill the queue
    for _ in range(4):
        manager.sleeping.delay(2)
    # Execute task and revoke it
    result = manager.add.apply_async((1, 1))
    result.revoke()
    with pytest.raises(cloudq.exceptions.TaskRevokedError):
        result.get()
    assert result.status == "REVOKED"
    assert result.ready() is True
    assert result.failed() is False
    assert result.successful() is False


def test_next_steps_calling_tasks(example: Example) -> None:
    """next-steps guide, "Calling tasks": get, id, a failing call read with propagate=False."""
    example("next_steps")
    from proj.tasks import add

    with start_worker(add.app, queues=["default"]):
        res = add.delay(2, 2)
        assert res.get(timeout=10) == 4
        assert isinstance(res.id, str)
        res = add.delay(2, "2")
        with pytest.raises(TypeError):
            res.get(timeout=10)
        assert isinstance(res.get(propagate=False), TypeError)
        assert res.failed() is True
        assert res.successful() is False
        assert res.state == "FAILURE"
        assert "TypeError" in (res.traceback or "")


def test_canvas_group_results(example: Example) -> None:
    """canvas guide, "Group Results": ``job.apply_async()``, ready, successful, get."""
    example("next_steps")
    from proj.tasks import add

    job = group(
        [
            add.s(2, 2),
            add.s(4, 4),
            add.s(8, 8),
            add.s(16, 16),
            add.s(32, 32),
        ]
    )
    with start_worker(add.app, queues=["default"]):
        result = job.apply_async()
        assert result.get(timeout=10) == [4, 8, 16, 32, 64]
        assert result.ready()  # have all subtasks completed?
        assert result.successful()  # were all subtasks successful?
        assert result.completed_count() == 5
        assert result.waiting() is False and result.failed() is False
