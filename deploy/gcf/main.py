"""Cloud Functions (gen2) entry point of a `cloudq deploy package --target gcf` zip: ``handler``.

A CloudEvent function for the Pub/Sub trigger of the function's queue; the app is named by
``CLOUDQ_APP``. The handler itself is cloudq-pubsub's, the same ``execute()`` as a worker.
"""

import os

import functions_framework

from cloudq.pool import load_app
from cloudq_pubsub import cloud_event_handler

_handle = cloud_event_handler(load_app(os.environ["CLOUDQ_APP"]))


@functions_framework.cloud_event
def handler(event):  # type: ignore[no-untyped-def]
    return _handle(event)
