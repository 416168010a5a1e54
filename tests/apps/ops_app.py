"""An importable app for the operations tests (``cloudq -A tests.apps.ops_app status`` ...).

Broker and backend come from ``CLOUDQ_*`` variables when set (subprocess workers on SQS and
Redis), else an in-process ``memory://ops`` pair. ``make_app(**settings)`` builds the same tasks
on other connections, for a test that needs an app of its own.
"""

from __future__ import annotations

import os
import time
from typing import Any

from cloudq import App


def make_app(**settings: Any) -> App:
    if "CLOUDQ_BROKER_URL" not in os.environ:
        settings.setdefault("broker_url", "memory://ops")
    if "CLOUDQ_RESULT_BACKEND" not in os.environ:
        settings.setdefault("result_backend", "memory://ops")
    app = App("ops", **settings)
    app.conf.task_routes = {"ops.mail.*": "mail"}

    @app.task(name="ops.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="ops.sleep", time_limit=60)
    def sleep(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @app.task(name="ops.fail", max_retries=0, queue="fragile")
    def fail(label: str) -> None:
        raise ValueError(f"failed on purpose: {label}")

    @app.task(name="ops.flaky", autoretry_for=(ConnectionError,), max_retries=1, retry_backoff=0.1)
    def flaky(marker: str) -> str:
        """Fails once (no marker file yet), then succeeds."""
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise ConnectionError("first attempt fails")
        return "ok"

    @app.task(name="ops.mail.send")
    def send_mail(to: str) -> str:
        return to

    return app


app = make_app()
