"""An importable app for the Service Bus worker tests
(``cloudq -A tests.apps.servicebus_app worker ...``).

Everything about the connection comes from ``CLOUDQ_*`` variables (``CLOUDQ_SERVICEBUS_CONNECTION``
and friends, ``AZURE_STORAGE_CONNECTION_STRING`` for results), so each test gives its worker
subprocesses an environment of its own (broker prefix, result table, lease).
The test process builds its own producer with ``make_app(broker=..., backend=..., ...)``: the
same tasks, registered under the same names, on the same queues.

Tasks leave their traces in marker files (one line per event, appended, with the pid and the
wall-clock time), so a test can count executions across worker processes.
"""

from __future__ import annotations

from typing import Any

from cloudq import App
from tests.apps.worker_tasks import make_worker_app


def make_app(**settings: Any) -> App:
    """The test app: keyword settings over the ``CLOUDQ_*`` environment."""
    return make_worker_app("servicebus_app", "sb", **settings)


app = make_app()
