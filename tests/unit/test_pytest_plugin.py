"""The pytest plugin's fixtures, as a user's test suite would use them."""

from __future__ import annotations

import pytest

from cloudq import App
from cloudq.worker import Worker


@pytest.fixture
def cloudq_config() -> dict[str, object]:
    return {"task_default_queue": "plugin-q"}


def test_app_and_worker_fixtures(cloudq_app: App, cloudq_worker: Worker) -> None:
    @cloudq_app.task
    def mul(a: int, b: int) -> int:
        return a * b

    assert cloudq_app.conf.task_default_queue == "plugin-q"
    assert cloudq_worker.queues == ["plugin-q"]
    assert mul.delay(6, 7).get(timeout=10) == 42
