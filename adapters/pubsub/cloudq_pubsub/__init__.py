"""cloudqueue-tasks-pubsub: Google Cloud Pub/Sub as a cloudq broker (``pubsub://PROJECT``),
the Cloud Functions handler, Firestore results (``firestore://``) and Cloud Storage claim checks
(``gs://``).

Importing this package does not import the google SDKs; opening a broker, backend or store does
(and ``cloud_function()`` imports functions-framework).
"""

from cloudq_pubsub.broker import (
    PartialSendError,
    PubSubBroker,
    QueueNotFoundError,
    open_pubsub_broker,
)
from cloudq_pubsub.functions import DeliveryHeld, cloud_function, process_event

__all__ = [
    "DeliveryHeld",
    "PartialSendError",
    "PubSubBroker",
    "QueueNotFoundError",
    "cloud_function",
    "open_pubsub_broker",
    "process_event",
]
