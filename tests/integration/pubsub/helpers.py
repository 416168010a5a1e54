"""Subprocesses for the Pub/Sub tests: ``cloudq worker`` processes and a functions-framework
server, each with an environment of its own; and waiting on conditions with a deadline."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloudq import App
from cloudq.adapters.base import Delivery
from tests.apps import pubsub_app
from tests.fixtures.pubsub_emulator import GCP_PROJECT
from tests.processes import CLOUDQ, ROOT, LoggedProcess

_BIN = Path(sys.executable).parent

APP_REF = "tests.apps.pubsub_app"


class Process(LoggedProcess):
    """A subprocess of the tests; ``graceful`` ones get SIGTERM first (a server that must stop
    its own children), the others SIGKILL."""

    def __init__(
        self, command: Sequence[str], env: dict[str, str], name: str, graceful: bool = False
    ) -> None:
        super().__init__(command, env, name)
        self.graceful = graceful


class Stack:
    """One test's topic prefix, result collection and marker directory; makes producers,
    workers and function servers that share them."""

    def __init__(self, tmp: Path) -> None:
        self.prefix = f"w{uuid.uuid4().hex[:10]}-"
        self.broker_url = f"pubsub://{GCP_PROJECT}?prefix={self.prefix}"
        self.backend_url = f"firestore://{GCP_PROJECT}/results-{uuid.uuid4().hex[:10]}"
        self.tmp = tmp
        self.processes: list[Process] = []
        self.apps: list[App] = []

    def settings(self, **settings: Any) -> dict[str, Any]:
        return {
            "broker_url": self.broker_url,
            "result_backend": self.backend_url,
            "worker_poll_seconds": 1,
            **settings,
        }

    def producer(self, **settings: Any) -> App:
        """An App in the test process with the same tasks, broker and backend as the workers."""
        app = pubsub_app.make_app(**self.settings(**settings))
        self.apps.append(app)
        return app

    def env(self, **settings: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")}
        env["PYTHONPATH"] = str(ROOT)
        for key, value in self.settings(**settings).items():
            env[f"CLOUDQ_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        return env

    def worker(
        self,
        queues: Sequence[str],
        concurrency: int = 1,
        prefetch: int | None = None,
        **settings: Any,
    ) -> Process:
        args = ["-Q", ",".join(queues), "-c", str(concurrency), "-l", "info"]
        if prefetch is not None:
            args += ["--prefetch", str(prefetch)]
        name = f"worker-{len(self.processes) + 1}"
        proc = Process([*CLOUDQ, "-A", APP_REF, "worker", *args], self.env(**settings), name)
        self.processes.append(proc)
        return proc

    def function_server(self, port: int, **settings: Any) -> Process:
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
        proc = Process(command, env, "function", graceful=True)  # gunicorn stops its worker
        self.processes.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.log() for p in self.processes)

    def close(self) -> None:
        processes, self.processes = self.processes, []
        apps, self.apps = self.apps, []
        try:
            for p in processes:
                if p.proc.poll() is None:
                    # Every one first: a slow wait must not spare the others.
                    if p.graceful:
                        p.proc.terminate()
                    else:
                        p.proc.kill()
            for p in processes:
                p.stop()
        finally:
            for app in apps:
                app.close()


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


def stop_all(processes: Sequence[Process]) -> None:
    for p in processes:
        if p.proc.poll() is None:
            p.signal(signal.SIGTERM)
    for p in processes:
        p.stop()
