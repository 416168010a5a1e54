"""An importable app for the revoke tests: processes-pool children and ``cloudq worker``
subprocesses import it. Tasks leave marker files, so a test in another process sees what ran."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cloudq import App

BROKER = os.environ.get("REVOKE_APP_BROKER", "memory://revoke-app")
BACKEND = os.environ.get("REVOKE_APP_BACKEND", "memory://revoke-app")
app = App("revoke", broker=BROKER, backend=BACKEND, queue_lease_seconds=5)


@app.task(name="revoke.touch")
def touch(path: str) -> str:
    """Leaves ``path``: the task ran."""
    Path(path).write_text("ran")
    return path


@app.task(name="revoke.spin", time_limit=120)
def spin(marker: str, seconds: float) -> str:
    """Leaves ``<marker>.started``, runs Python for ``seconds``, then leaves ``<marker>.done``."""
    Path(f"{marker}.started").write_text(str(os.getpid()))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)
    Path(f"{marker}.done").write_text("done")
    return "done"
