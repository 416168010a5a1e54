"""An importable app for the canvas tests on SQS: ``cloudq worker`` subprocesses import it.
The tasks are those of Celery's canvas guide; ``log_error`` (Celery's ``(request, exc,
traceback)`` errback) leaves a marker file named after the failed task, in ``CANVAS_MARKERS``.

``app`` is on the memory broker and backend unless ``CLOUDQ_BROKER_URL`` /
``CLOUDQ_RESULT_BACKEND`` say otherwise (a subprocess worker on SQS with Redis)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cloudq import App


def make_app(**settings: Any) -> App:
    if "CLOUDQ_BROKER_URL" not in os.environ:
        settings.setdefault("broker_url", "memory://canvas-app")
    if "CLOUDQ_RESULT_BACKEND" not in os.environ:
        settings.setdefault("result_backend", "memory://canvas-app")
    app = App("canvas", **settings)

    @app.task(name="canvas.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="canvas.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="canvas.tsum")
    def tsum(nums: list[int]) -> int:
        return sum(nums)

    @app.task(name="canvas.raising_task")
    def raising_task() -> None:
        raise ValueError("something something")

    @app.task(name="canvas.log_error")
    def log_error(request: Any, exc: Any, traceback: Any) -> None:
        markers = Path(os.environ.get("CANVAS_MARKERS", "."))
        (markers / str(request.id)).write_text(repr(exc))

    return app


app = make_app()
