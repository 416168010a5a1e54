"""What the Service Bus tests share: a per-test stack, queue stats and raw receives.

The test process is the producer (its own App on the same ``servicebus://?prefix=...`` broker
and Azure Table results on Azurite) and the observer (results, marker files written by the
tasks, the workers' logs, queues read with the raw SDK). Every test has queues of its own (a
unique prefix). Waits are on conditions with timeouts; worker processes are killed in a
``finally`` whatever happens.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps import servicebus_app
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint
from tests.integration.stack import Stack, new_prefix

APP_REF = "tests.apps.servicebus_app"
KEEP = ("CLOUDQ_SERVICEBUS_", "CLOUDQ_AZ")  # the endpoint's connections, Azure settings


@pytest.fixture
def stack(
    servicebus_env: ServiceBusEndpoint, azure_storage_env: str, tmp_path: Path
) -> Iterator[Stack]:
    prefix = new_prefix()
    broker_url = f"servicebus://?prefix={prefix}"
    backend_url = f"azuretable://cloudq{uuid.uuid4().hex[:12]}?create=1"
    with Stack(
        tmp_path, broker_url, backend_url, prefix, servicebus_app.make_app, APP_REF, KEEP
    ) as s:
        yield s


def raw_receive(
    connection: str, queue: str, count: int = 10, wait: float = 1.0, complete: bool = True
) -> list[Any]:
    """Messages taken with the plain SDK, behind cloudq's back (completed unless asked not)."""
    from azure.servicebus import ServiceBusClient

    with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_receiver(queue) as receiver,
    ):
        got = receiver.receive_messages(max_message_count=count, max_wait_time=wait)
        if complete:
            for message in got:
                receiver.complete_message(message)
        return list(got)
