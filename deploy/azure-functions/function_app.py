"""Azure Functions (Python v2 model) entry point of a `cloudq deploy package --target
azure-functions` zip.

One Service Bus trigger per cloudq queue in ``CLOUDQ_QUEUES`` (comma-separated; the Service Bus
queue is the broker's name for it, prefix included) through the connection ``CLOUDQ_SERVICEBUS``
(identity-based: ``CLOUDQ_SERVICEBUS__fullyQualifiedNamespace``). The app is named by
``CLOUDQ_APP``; the handler is cloudqueue-tasks-servicebus's, the same ``execute()`` as a worker.
FIFO queues (``*.fifo``) are session queues: their triggers are in session mode.
"""

import os
import re

import azure.functions as func

from cloudq.adapters.wire import is_fifo
from cloudq.pool import load_app
from cloudq_servicebus import functions_handler

_cloudq_app = load_app(os.environ["CLOUDQ_APP"])
app = func.FunctionApp()


def _trigger(queue: str) -> None:
    handle = functions_handler(_cloudq_app, queue)
    physical = _cloudq_app.broker.physical_name(queue)  # type: ignore[attr-defined]

    @app.function_name(name="cloudq_" + re.sub(r"\W", "_", queue))
    @app.service_bus_queue_trigger(
        arg_name="msg",
        queue_name=physical,
        connection="CLOUDQ_SERVICEBUS",
        is_sessions_enabled=is_fifo(queue),  # FIFO queues are session queues
    )
    def run(msg: func.ServiceBusMessage) -> None:
        handle(msg)


for _queue in filter(None, os.environ.get("CLOUDQ_QUEUES", "").split(",")):
    _trigger(_queue.strip())
