"""``priority=`` on the Service Bus test endpoint: the urgent task's sub-queue drains first."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint
from tests.integration.priority_scenario import urgent_runs_before_the_backlog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_urgent_task_runs_before_the_backlog(servicebus_env: ServiceBusEndpoint) -> None:
    app = App(
        "prio",
        broker=f"servicebus://?prefix=p{uuid.uuid4().hex[:8]}-",
        backend=f"memory://{uuid.uuid4().hex}",
        task_priority_queues=True,
    )
    urgent_runs_before_the_backlog(app)
