"""What the Pub/Sub tests share: a per-test stack that also runs a functions-framework server,
and pulls that wait with a deadline."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

from cloudq import App
from cloudq.adapters.base import Delivery
from tests.apps import pubsub_app
from tests.fixtures.pubsub_emulator import GCP_PROJECT
from tests.integration.stack import Stack, new_prefix
from tests.processes import ROOT, LoggedProcess

_BIN = Path(sys.executable).parent

APP_REF = "tests.apps.pubsub_app"


class PubSubStack(Stack):
    """A stack on the Pub/Sub and Firestore emulators that also serves the handler with
    functions-framework, as Cloud Functions does."""

    def __init__(self, tmp: Path) -> None:
        prefix = new_prefix()
        broker_url = f"pubsub://{GCP_PROJECT}?prefix={prefix}"
        backend_url = f"firestore://{GCP_PROJECT}/results-{uuid.uuid4().hex[:10]}"
        super().__init__(tmp, broker_url, backend_url, prefix, pubsub_app.make_app, APP_REF)

    def function_server(self, port: int, **settings: Any) -> LoggedProcess:
        """functions-framework serving ``tests.apps.pubsub_app:handler`` on 127.0.0.1:port."""
        command = [
            str(_BIN / "functions-framework"),
            "--source",
            str(ROOT / "tests" / "apps" / "pubsub_app.py"),
            "--target",
            "handler",
            "--signature-type",
            "cloudevent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        env = self.env(**settings)
        env["WORKERS"] = "1"
        env["THREADS"] = "4"
        return self.spawn(command, env, "function", graceful=True)  # gunicorn stops its worker


def pull_all(app: App, queue: str, timeout: float, lease: float = 60) -> list[Delivery]:
    """Everything visible on ``queue`` within ``timeout`` (pulled and left leased)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = app.broker.receive(queue, 10, 0.5, lease)
        got += batch
        if not batch and got:
            break
    return got


def nothing_visible(app: App, queue: str, wait: float = 1.0) -> bool:
    """True if a pull of ``wait`` seconds finds nothing on ``queue`` (what it finds is nacked)."""
    found = app.broker.receive(queue, 10, wait, 30)
    if found:
        app.broker.release(found, 0)
    return not found
