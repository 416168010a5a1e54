"""``priority=`` on moto SQS: the urgent task's sub-queue is drained before the backlog."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App
from tests.integration.priority_scenario import urgent_runs_before_the_backlog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_urgent_task_runs_before_the_backlog(sqs_env: str) -> None:
    app = App(
        "prio",
        broker=f"sqs://?prefix=p{uuid.uuid4().hex[:8]}-",
        backend=f"memory://{uuid.uuid4().hex}",
        task_priority_queues=True,
    )
    urgent_runs_before_the_backlog(app)
