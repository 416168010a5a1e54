"""The practical limit on Service Bus: a raw azure-servicebus loop, no task library.

Producer: ``send_messages`` of a list of 20 (``batch``; cloudq's batch size on Service Bus) or
one ``send_messages`` per task. Worker (``python -m bench.contenders.raw_servicebus``): one
PEEK_LOCK receiver, ``receive_messages`` of up to 20, run the task, ``complete_message`` each
(Service Bus settles one message per call). The queue is made with the administration client.

Connection strings come from ``$CLOUDQ_SERVICEBUS_CONNECTION`` and
``$CLOUDQ_SERVICEBUS_ADMIN_CONNECTION`` (where the administration API is served elsewhere, as
on the emulators), the variables cloudq reads, so both contenders use the same endpoint.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from bench.contenders.common import queue, record

BATCH = 20


def _client() -> Any:
    from azure.servicebus import ServiceBusClient

    return ServiceBusClient.from_connection_string(os.environ["CLOUDQ_SERVICEBUS_CONNECTION"])


def _create_queue() -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.servicebus.management import ServiceBusAdministrationClient

    admin = ServiceBusAdministrationClient.from_connection_string(
        os.environ.get("CLOUDQ_SERVICEBUS_ADMIN_CONNECTION")
        or os.environ["CLOUDQ_SERVICEBUS_CONNECTION"]
    )
    try:
        admin.create_queue(queue())
    except ResourceExistsError:
        pass
    finally:
        admin.close()


class Producer:
    def __init__(self, batch: bool = True) -> None:
        _create_queue()
        self.client = _client()
        self.sender = self.client.get_queue_sender(queue())
        self.size = BATCH if batch else 1

    def send(self, t0s: list[float]) -> None:
        from azure.servicebus import ServiceBusMessage

        for start in range(0, len(t0s), self.size):
            messages = [
                ServiceBusMessage(json.dumps({"t0": t0})) for t0 in t0s[start : start + self.size]
            ]
            self.sender.send_messages(messages if self.size > 1 else messages[0])

    def close(self) -> None:
        self.sender.close()
        self.client.close()


def worker_cmd() -> list[str]:
    return [sys.executable, "-m", "bench.contenders.raw_servicebus"]


def serve() -> None:
    client = _client()
    with client.get_queue_receiver(queue()) as receiver:
        while True:
            messages = receiver.receive_messages(max_message_count=BATCH, max_wait_time=5)
            for message in messages:
                record(json.loads(str(message))["t0"])
                receiver.complete_message(message)


if __name__ == "__main__":
    serve()
