"""Cloud Functions (gen2) entry point of a `cloudq deploy package --target gcf` zip: ``handler``.

A CloudEvent function for the Pub/Sub trigger of the function's queue; the app is named by
``CLOUDQ_APP`` and the function's timeout by ``CLOUDQ_FUNCTION_TIMEOUT`` (seconds; tasks get the
time left as their hard limit). The handler is cloudqueue-tasks-pubsub's: the same ``execute()``
as a worker.
"""

import os

from cloudq.pool import load_app
from cloudq_pubsub import cloud_function

_timeout = os.environ.get("CLOUDQ_FUNCTION_TIMEOUT")
handler = cloud_function(
    load_app(os.environ["CLOUDQ_APP"]),
    timeout_seconds=float(_timeout) if _timeout else None,
)
