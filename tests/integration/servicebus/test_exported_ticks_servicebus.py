"""A Logic App recurrence's message on the Service Bus test endpoint: the exported body with the
MessageId the Logic App sets (``beat-<name>-<scheduled time>``); every tick runs."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App
from cloudq.beat_export import LOGIC_APP_SCHEDULED_TIME, export
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint
from tests.integration.ticks_scenario import every_tick_runs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_every_logic_app_tick_runs(servicebus_env: ServiceBusEndpoint) -> None:
    app = App(
        "ticks",
        broker=f"servicebus://?prefix=t{uuid.uuid4().hex[:8]}-",
        backend=f"memory://{uuid.uuid4().hex}",
        signing_keys=["k1"],
    )
    app.task(name="rollup")(lambda: None)
    app.conf.beat_schedule = {"nightly": {"task": "rollup", "schedule": "0 3 * * *"}}
    template = str(export(app, "logic-app")["nightly"]["message_id"])

    def scheduled(i: int) -> str:  # what Logic Apps makes of the expression on day i
        return template.replace(LOGIC_APP_SCHEDULED_TIME, f"2030-01-0{i + 1}T03:00:00Z")

    runs = every_tick_runs(app, "logic-app", message_id=scheduled)
    assert sorted(runs) == [scheduled(i) for i in range(3)]
