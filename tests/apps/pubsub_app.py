"""An importable app for the Pub/Sub worker and Cloud Functions tests
(``cloudq -A tests.apps.pubsub_app worker ...``, ``functions-framework --target handler``).

Everything about the connection comes from ``CLOUDQ_*`` variables and the emulators' own
(``PUBSUB_EMULATOR_HOST``, ``FIRESTORE_EMULATOR_HOST``), so each test gives its subprocesses an
environment of its own (topic prefix, result collection, lease).
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
    return make_worker_app("pubsub_app", "ps", **settings)


app = make_app()


def __getattr__(name: str) -> Any:
    """``handler``: the Cloud Function, built on first use so that workers never import
    functions-framework."""
    if name == "handler":
        from cloudq_pubsub.functions import cloud_function

        handler = cloud_function(app)
        globals()["handler"] = handler
        return handler
    raise AttributeError(name)
