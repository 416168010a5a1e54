"""Celery's signals guide, each receiver as the guide writes it with only the import changed
(``from cloudq.signals import ...``), on ``memory://`` with a worker thread."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cloudq import App as Celery
from cloudq import signals
from cloudq.testing import start_worker

printed: list[str] = []


def print(text: str) -> None:
    printed.append(text)


@pytest.fixture
def app() -> Iterator[Celery]:
    printed.clear()
    url = f"memory://signals-guide-{uuid.uuid4().hex[:8]}"
    app = Celery("proj", broker=url, backend=url)

    @app.task(name="proj.tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.tasks.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    yield app
    app.close()


def test_after_task_publish_reads_the_id_from_headers(app: Celery) -> None:
    """Signals guide, "Basics": an after_task_publish receiver reading ``info['id']``."""

    @signals.after_task_publish.connect
    def task_sent_handler(sender=None, headers=None, body=None, **kwargs):  # type: ignore[no-untyped-def]
        # information about task are located in headers for task messages
        # using the task protocol version 2.
        info = headers if "task" in headers else body
        print("after_task_publish for task id {info[id]}".format(info=info))  # noqa: UP032

    try:
        result = app.tasks["proj.tasks.add"].delay(2, 2)
    finally:
        signals.after_task_publish.disconnect(task_sent_handler)
    assert printed == [f"after_task_publish for task id {result.id}"]


def test_after_task_publish_with_a_sender_filter(app: Celery) -> None:
    """Signals guide: ``@after_task_publish.connect(sender='proj.tasks.add')``."""

    @signals.after_task_publish.connect(sender="proj.tasks.add")
    def task_sent_handler(sender=None, headers=None, body=None, **kwargs):  # type: ignore[no-untyped-def]
        info = headers if "task" in headers else body
        print("after_task_publish for task id {info[id]}".format(info=info))  # noqa: UP032

    try:
        added = app.tasks["proj.tasks.add"].delay(2, 2)
        app.tasks["proj.tasks.mul"].delay(2, 2)
    finally:
        signals.after_task_publish.disconnect(task_sent_handler)
    assert printed == [f"after_task_publish for task id {added.id}"]


def test_celeryd_init_for_one_worker_node(app: Celery) -> None:
    """Signals guide, celeryd_init: configure only the worker named by the sender."""

    @signals.celeryd_init.connect(sender="worker12@example.com")
    def configure_worker12(conf=None, **kwargs):  # type: ignore[no-untyped-def]
        conf.task_default_rate_limit = "10/m"

    try:
        from cloudq.worker import Worker

        other = Worker(app, ["default"], hostname="worker1@example.com")
        assert other.hostname == "worker1@example.com"
        with start_worker(app):  # another node name: not configured
            pass
        assert app.conf.task_default_rate_limit is None
        app.hooks.emit(
            "worker_start", worker=Worker(app, ["default"], hostname="worker12@example.com")
        )
        assert app.conf.task_default_rate_limit == "10/m"
    finally:
        signals.celeryd_init.disconnect(configure_worker12)


def test_task_success_failure_prerun_postrun(app: Celery) -> None:
    """Task signals with the arguments Celery passes, around a real worker's tasks."""
    seen: list[tuple[str, Any]] = []

    @signals.task_prerun.connect
    def prerun(sender=None, task_id=None, task=None, args=None, kwargs=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(("prerun", (task.name, args)))

    @signals.task_postrun.connect
    def postrun(sender=None, task_id=None, retval=None, state=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(("postrun", (retval, state)))

    @signals.task_success.connect(sender=app.tasks["proj.tasks.add"])
    def success(sender=None, result=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(("success", result))

    receivers = [(signals.task_prerun, prerun), (signals.task_postrun, postrun)]
    receivers.append((signals.task_success, success))
    try:
        with start_worker(app, concurrency=1):
            assert app.tasks["proj.tasks.add"].delay(2, 3).get(timeout=10) == 5
            assert app.tasks["proj.tasks.mul"].delay(2, 3).get(timeout=10) == 6
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)
    assert seen == [
        ("prerun", ("proj.tasks.add", [2, 3])),
        ("success", 5),
        ("postrun", (5, "SUCCESS")),
        ("prerun", ("proj.tasks.mul", [2, 3])),
        ("postrun", (6, "SUCCESS")),
    ]
