"""What the Service Bus tests share: worker subprocesses, a per-test stack, marker files.

The test process is the producer (its own App on the same ``servicebus://?prefix=...`` broker
and Azure Table results on Azurite) and the observer (results, marker files written by the
tasks, the workers' logs, queues read with the raw SDK). Every test has queues of its own (a
unique prefix). Waits are on conditions with timeouts; worker processes are killed in a
``finally`` whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cloudq import App
from cloudq.adapters.base import QueueStats
from tests.apps import servicebus_app
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint

ROOT = Path(__file__).resolve().parents[3]
_SCRIPT = Path(sys.executable).with_name("cloudq")
CLOUDQ = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cloudq.cli"]
APP_REF = "tests.apps.servicebus_app"
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


class WorkerProcess:
    """One ``cloudq worker`` subprocess; its stderr is read into ``lines`` by a thread."""

    def __init__(self, args: Sequence[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*CLOUDQ, "-A", APP_REF, "worker", *args],
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

    def find(self, pattern: str) -> list[re.Match[str]]:
        found = (re.search(pattern, line) for line in list(self.lines))
        return [m for m in found if m]

    def wait_log(self, pattern: str, timeout: float) -> re.Match[str]:
        def probe() -> re.Match[str] | None:
            matches = self.find(pattern)
            if matches:
                return matches[0]
            if self.proc.poll() is not None:
                self._reader.join(5)
                matches = self.find(pattern)
                if matches:
                    return matches[0]
                pytest.fail(f"worker exited before logging {pattern!r}\n{self.log()}")
            return None

        return wait_for(probe, timeout, f"{pattern!r} in the log of {self.name}", self.log)

    def wait_ready(self) -> None:
        self.wait_log(r"worker \S+ ready: ", STARTUP_TIMEOUT)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout}s\n{self.log()}")
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


class Stack:
    """One test's queue prefix, result table and marker directory; makes producers and workers."""

    def __init__(self, tmp: Path) -> None:
        self.prefix = f"w{uuid.uuid4().hex[:10]}-"
        self.broker_url = f"servicebus://?prefix={self.prefix}"
        self.backend_url = f"azuretable://cloudq{uuid.uuid4().hex[:12]}?create=1"
        self.tmp = tmp
        self.workers: list[WorkerProcess] = []
        self.apps: list[App] = []

    def settings(self, **settings: Any) -> dict[str, Any]:
        return {
            "broker_url": self.broker_url,
            "result_backend": self.backend_url,
            "worker_poll_seconds": 1,
            **settings,
        }

    def producer(self, **settings: Any) -> App:
        app = servicebus_app.make_app(**self.settings(**settings))
        self.apps.append(app)
        return app

    def worker_env(self, **settings: Any) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CLOUDQ_") or k.startswith(("CLOUDQ_SERVICEBUS_", "CLOUDQ_AZ"))
        }
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
    ) -> WorkerProcess:
        args = ["-Q", ",".join(queues), "-c", str(concurrency), "-l", "info"]
        if prefetch is not None:
            args += ["--prefetch", str(prefetch)]
        proc = WorkerProcess(args, self.worker_env(**settings), f"worker-{len(self.workers) + 1}")
        self.workers.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)

    def close(self) -> None:
        workers, self.workers = self.workers, []
        apps, self.apps = self.apps, []
        try:
            for w in workers:
                w.proc.kill()
            for w in workers:
                w.kill()
        finally:
            for app in apps:
                app.close()


@pytest.fixture
def stack(
    servicebus_env: ServiceBusEndpoint, azure_storage_env: str, tmp_path: Path
) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


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


def drained(app: App, queue: str) -> QueueStats | None:
    """The queue's stats if nothing is left in it (active or scheduled), else None."""
    stats = app.broker.stats(queue)
    if stats.visible or stats.in_flight or stats.delayed:
        return None
    return stats


def raw_receive(
    connection: str, queue: str, count: int = 10, wait: float = 1.0, complete: bool = True
) -> list[Any]:
    """Messages taken with the plain SDK, behind cloudq's back (completed unless asked not)."""
    from azure.servicebus import ServiceBusClient

    with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_receiver(queue) as receiver,
    ):
        got = receiver.receive_messages(max_message_count=count, max_wait_time=wait)
        if complete:
            for message in got:
                receiver.complete_message(message)
        return list(got)
