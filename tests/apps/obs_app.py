"""The SQS worker tests' app (``tests.apps.sqs_app``'s tasks and names) with every observability
integration configured in the module, as a user's tasks.py has them, so a ``cloudq worker``
subprocess and each of its processes-pool children (which import this module) observe alike.

With the variables set (the test gives them to the worker's environment only), each process
appends what it observed to the files they name, one JSON object a line:

- ``OTEL_TEST_SPANS``: the spans it ended (``tests.apps.otel_app.SpanFile``);
- ``SENTRY_TEST_EVENTS``: the Sentry events ``SentryReports`` captured (a sentry-sdk transport
  that writes a file: no network), with sentry-sdk's default integrations on (logging's too),
  as users have them;
- ``OBS_TEST_REPORTS``: the error reports ``app.on_failure`` received.

Prometheus and JSON logs are the worker's own options (``--metrics-port``, ``--log-format``).
The ``obs.charge`` task logs a line inside the task, to see the context the JSON logs carry.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from cloudq import App
from cloudq.reports import FailureReport
from tests.apps import otel_app  # with OTEL_TEST_SPANS set, its import instruments this process
from tests.apps.worker_tasks import make_worker_app

SPANS_ENV = otel_app.SPANS_ENV
SENTRY_ENV = "SENTRY_TEST_EVENTS"
REPORTS_ENV = "OBS_TEST_REPORTS"  # not CLOUDQ_*: the test stack drops those from the environment
_lock = threading.Lock()


def append_json(path: str, record: Any) -> None:
    line = json.dumps(record, default=str) + "\n"
    with _lock, open(path, "a", encoding="utf-8") as out:
        out.write(line)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def make_app(**settings: Any) -> App:
    """``sqs_app``'s tasks, and ``obs.charge``: keyword settings over the ``CLOUDQ_*`` ones."""
    app = make_worker_app("obs_app", "sqs", **settings)

    @app.task(name="obs.charge")
    def charge(order: int) -> int:
        logging.getLogger("obs").info("charging order %d", order)
        return order

    return app


def _sentry(path: str) -> None:
    import sentry_sdk
    from sentry_sdk.transport import Transport

    class EventFile(Transport):
        """Each event sentry-sdk would send, as a JSON line in ``path``."""

        def capture_envelope(self, envelope: Any) -> None:
            event = envelope.get_event()
            if event is not None:
                append_json(path, event)

    # The default integrations (logging's among them) as users have them; not the ones
    # sentry-sdk enables for each library it finds installed: importing those costs seconds.
    sentry_sdk.init(
        dsn="https://key@sentry.invalid/1", transport=EventFile(), auto_enabling_integrations=False
    )


def _report(path: str, report: FailureReport) -> None:
    append_json(path, {**dataclasses.asdict(report), "pid": os.getpid()})


app = make_app()

if os.environ.get(SENTRY_ENV):
    from cloudq.contrib.sentry import SentryReports

    _sentry(os.environ[SENTRY_ENV])
    app.add_middleware(SentryReports())

if os.environ.get(REPORTS_ENV):
    _path = os.environ[REPORTS_ENV]
    app.on_failure(lambda report: _report(_path, report))
