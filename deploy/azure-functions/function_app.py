"""Azure Functions (Python v2 model) entry point of a `cloudq deploy package --target
azure-functions` zip.

One Service Bus trigger per queue in ``CLOUDQ_QUEUES`` (comma-separated Service Bus queue names)
through the connection ``CLOUDQ_SERVICEBUS`` (identity-based:
``CLOUDQ_SERVICEBUS__fullyQualifiedNamespace``). The app is named by ``CLOUDQ_APP``; the handler
is cloudq-servicebus's, the same ``execute()`` as a worker.
"""

import os
import re

import azure.functions as func

from cloudq.pool import load_app
from cloudq_servicebus import azure_functions_handler

_handle = azure_functions_handler(load_app(os.environ["CLOUDQ_APP"]))
app = func.FunctionApp()


def _trigger(queue: str) -> None:
    @app.function_name(name="cloudq_" + re.sub(r"\W", "_", queue))
    @app.service_bus_queue_trigger(arg_name="msg", queue_name=queue, connection="CLOUDQ_SERVICEBUS")
    def run(msg: func.ServiceBusMessage) -> None:
        _handle(msg)


for _queue in filter(None, os.environ.get("CLOUDQ_QUEUES", "").split(",")):
    _trigger(_queue.strip())
