"""An importable app for the revoke tests: processes-pool children and ``cloudq worker``
subprocesses import it. Tasks leave marker files, so a test in another process sees what ran.

``app`` is on the memory broker and backend unless ``CLOUDQ_BROKER_URL`` /
``CLOUDQ_RESULT_BACKEND`` say otherwise (a subprocess worker on SQS with Redis)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cloudq import App


def make_app(**settings: Any) -> App:
    if "CLOUDQ_BROKER_URL" not in os.environ:
        settings.setdefault("broker_url", "memory://revoke-app")
    if "CLOUDQ_RESULT_BACKEND" not in os.environ:
        settings.setdefault("result_backend", "memory://revoke-app")
    settings.setdefault("queue_lease_seconds", 5)
    app = App("revoke", **settings)

    @app.task(name="revoke.touch")
    def touch(path: str) -> str:
        """Leaves ``path``: the task ran."""
        Path(path).write_text("ran")
        return path

    @app.task(name="revoke.spin", time_limit=120)
    def spin(marker: str, seconds: float) -> str:
        """Leaves ``<marker>.started``, runs Python for ``seconds``, then ``<marker>.done``."""
        Path(f"{marker}.started").write_text(str(os.getpid()))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.01)
        Path(f"{marker}.done").write_text("done")
        return "done"

    return app


app = make_app()
