"""``priority=`` on the Pub/Sub emulator: the urgent task's sub-queue drains first."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App
from tests.fixtures.pubsub_emulator import GCP_PROJECT, unique_prefix
from tests.integration.priority_scenario import urgent_runs_before_the_backlog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_urgent_task_runs_before_the_backlog(pubsub_env: str) -> None:
    app = App(
        "prio",
        broker=f"pubsub://{GCP_PROJECT}?prefix={unique_prefix('prio')}",
        backend=f"memory://{uuid.uuid4().hex}",
        task_priority_queues=True,
    )
    try:
        urgent_runs_before_the_backlog(app)
    finally:
        app.close()
