"""cloudqueue-tasks-servicebus: Azure Service Bus as a cloudq broker (``servicebus://``), the Azure
Functions handler, Azure Table results (``azuretable://``) and Azure Blob claim checks
(``azblob://``).

Importing this package imports no azure SDK; opening a broker, backend or store does.
"""

from cloudq_servicebus.broker import QueueNotFoundError, ServiceBusBroker, open_servicebus_broker
from cloudq_servicebus.functions import functions_handler, process_messages

__all__ = [
    "QueueNotFoundError",
    "ServiceBusBroker",
    "functions_handler",
    "open_servicebus_broker",
    "process_messages",
]
