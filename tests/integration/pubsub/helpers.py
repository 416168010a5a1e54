"""Subprocesses for the Pub/Sub tests: ``cloudq worker`` processes and a functions-framework
server, each with an environment of its own; and waiting on conditions with a deadline."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cloudq import App
from cloudq.adapters.base import Delivery
from tests.apps import pubsub_app
from tests.fixtures.pubsub_emulator import GCP_PROJECT

ROOT = Path(__file__).resolve().parents[3]
_BIN = Path(sys.executable).parent
CLOUDQ = (
    [str(_BIN / "cloudq")] if (_BIN / "cloudq").exists() else [sys.executable, "-m", "cloudq.cli"]
)
APP_REF = "tests.apps.pubsub_app"
STARTUP_TIMEOUT = 30.0

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout: float, what: str, logs: Callable[[], str] = str
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs()}")
        time.sleep(0.05)


def events(marker: Path, kind: str) -> list[tuple[int, float, str]]:
    """(pid, time, extra) of each ``kind`` line a task appended to ``marker``."""
    if not marker.exists():
        return []
    found = []
    for line in marker.read_text().splitlines():
        fields = line.split(" ")
        if fields[0] == kind:
            found.append((int(fields[1]), float(fields[2]), " ".join(fields[3:])))
    return found


class Process:
    """A subprocess whose stderr is read into ``lines`` by a thread."""

    def __init__(
        self, command: Sequence[str], env: dict[str, str], name: str, graceful: bool = False
    ) -> None:
        self.name = name
        self.graceful = graceful
        """Stopped with SIGTERM first (a server that must stop its own children), not killed."""
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return f"--- {self.name} (pid {self.pid}) ---\n" + "".join(list(self.lines))

    def find(self, pattern: str, start: int = 0) -> list[re.Match[str]]:
        found = (re.search(pattern, line) for line in list(self.lines)[start:])
        return [m for m in found if m]

    def wait_log(self, pattern: str, timeout: float, count: int = 1) -> re.Match[str]:
        """Wait for ``count`` log lines to match; fail at once if the process exits."""

        def probe() -> re.Match[str] | None:
            matches = self.find(pattern)
            if len(matches) >= count:
                return matches[count - 1]
            if self.proc.poll() is not None:
                self._reader.join(5)
                matches = self.find(pattern)
                if len(matches) >= count:
                    return matches[count - 1]
                pytest.fail(
                    f"{self.name} exited with {self.proc.returncode} before logging "
                    f"{pattern!r}\n{self.log()}"
                )
            return None

        return wait_for(probe, timeout, f"{pattern!r} x{count} in the log of {self.name}", self.log)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout}s\n{self.log()}")
        self._reader.join(5)
        return code

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


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
