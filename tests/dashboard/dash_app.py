"""The app the dashboard tests serve: ``cloudq worker`` and ``cloudq dashboard`` subprocesses
import it. On the memory broker unless ``CLOUDQ_BROKER_URL``/``CLOUDQ_RESULT_BACKEND`` say
otherwise (moto SQS with Redis or DynamoDB)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cloudq import App

XSS = "<script>alert('x')</script>"
"""What a hostile sender puts in args and errors: must reach the page as text."""


def make_app(**settings: Any) -> App:
    if "CLOUDQ_BROKER_URL" not in os.environ:
        settings.setdefault("broker_url", "memory://dash-app")
    if "CLOUDQ_RESULT_BACKEND" not in os.environ:
        settings.setdefault("result_backend", "memory://dash-app")
    settings.setdefault("queue_lease_seconds", 5)
    app = App("dash", **settings)

    @app.task(name="dash.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="dash.boom", report_args=True)
    def boom(text: str) -> None:
        """Fails for good with ``text`` in its error: a dead letter carrying it twice."""
        raise ValueError(text)

    @app.task(name="dash.flaky", report_args=True)
    def flaky(marker: str) -> str:
        """Fails until ``marker`` exists: dead-lettered first, succeeds once redriven."""
        if not Path(marker).exists():
            raise RuntimeError(f"{marker} is missing")
        return "ok"

    @app.task(name="dash.private")
    def private(email: str) -> None:
        """Fails for good; its arguments are not for pages (no ``report_args``)."""
        raise ValueError("no mail")

    @app.task(name="dash.spawn")
    def spawn(n: int) -> int:
        """Sends a child of its own (``delay`` inside a task): listed among its children."""
        add.delay(n, n)
        return n

    @app.task(name="dash.total")
    def total(parts: list[int]) -> int:
        return sum(parts)

    @app.task(name="dash.touch")
    def touch(path: str) -> str:
        Path(path).write_text("ran")
        return path

    return app


app = make_app()
