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
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import QueueStats
from tests.apps import servicebus_app
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint
from tests.processes import ROOT
from tests.processes import LoggedProcess as WorkerProcess

APP_REF = "tests.apps.servicebus_app"


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
        name = f"worker-{len(self.workers) + 1}"
        proc = WorkerProcess.worker(APP_REF, args, self.worker_env(**settings), name)
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
