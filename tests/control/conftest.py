"""The operations tests' stack: an app of the test's own, on the memory broker and backend or on
SQS (moto server) with Redis, importable by the CLI under a module name of its own, and real
workers (in threads here; in subprocesses for ``multi``)."""

from __future__ import annotations

import json
import sys
import threading
import traceback
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cloudq import App
from cloudq.cli import main
from cloudq.control.commands import live_workers
from cloudq.control.store import control_store
from cloudq.testing import wait_for
from cloudq.worker import Worker
from tests.apps import ops_app

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT = 0.2


class Ops:
    """One test's app, its CLI and its workers."""

    def __init__(self, kind: str, **settings: Any) -> None:
        self.kind = kind
        self.app: App = ops_app.make_app(worker_poll_seconds=0.2, **settings)
        self.ref = f"ops_{kind}_{uuid.uuid4().hex[:8]}"
        module = types.ModuleType(self.ref)
        module.app = self.app  # type: ignore[attr-defined]
        sys.modules[self.ref] = module
        self._threads: list[tuple[Worker, threading.Thread]] = []

    def cli(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, ["-A", self.ref, *args], input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self.cli(*args, input=input)
        detail = ""
        if result.exc_info is not None and not isinstance(result.exception, SystemExit):
            detail = "".join(traceback.format_exception(*result.exc_info))
        assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.output}{detail}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def records(self) -> dict[str, dict[str, Any]]:
        return live_workers(control_store(self.app))

    @contextmanager
    def worker(self, queues: list[str], name: str = "w1", **options: Any) -> Iterator[Worker]:
        """A real worker in a thread, listed in ``status`` before the block starts."""
        worker = Worker(
            self.app,
            queues,
            hostname=f"{name}@test",
            heartbeat_seconds=HEARTBEAT,
            poll_seconds=0.2,
            **options,
        )
        thread = threading.Thread(target=worker.run, name=f"worker-{name}", daemon=True)
        thread.start()
        self._threads.append((worker, thread))
        try:
            wait_for(lambda: worker.hostname in self.records(), timeout=15, message="heartbeat")
            yield worker
        finally:
            worker.stop()
            thread.join(30)
            assert not thread.is_alive(), "the worker did not stop"

    def close(self) -> None:
        for worker, thread in self._threads:
            worker.stop()
            thread.join(30)
        sys.modules.pop(self.ref, None)
        self.app.close()


def make_ops(request: pytest.FixtureRequest, kind: str, **settings: Any) -> Ops:
    if kind == "sqs":
        request.getfixturevalue("sqs_env")
        redis_url = request.getfixturevalue("redis_url")
        prefix = f"o{uuid.uuid4().hex[:10]}-"
        settings.setdefault("broker_url", f"sqs://?prefix={prefix}")
        settings.setdefault("result_backend", f"{redis_url}?prefix=cloudq-{prefix}")
    else:
        name = uuid.uuid4().hex
        settings.setdefault("broker_url", f"memory://{name}")
        settings.setdefault("result_backend", f"memory://{name}")
    return Ops(kind, **settings)


@pytest.fixture(params=["memory", "sqs"])
def ops(request: pytest.FixtureRequest) -> Iterator[Ops]:
    """The stack, once on the memory broker and backend, once on moto SQS with Redis."""
    stack = make_ops(request, request.param)
    try:
        yield stack
    finally:
        stack.close()
