"""The FastAPI example app end to end: uvicorn and ``cloudq worker`` subprocesses on moto SQS with
Redis results, httpx as the client. POST enqueues with ``adelay()``, the worker runs the task
(an async one calls back into the API on the HTTP pool its loop keeps), GET reads the result
with ``aget()``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import free_port
from tests.integration.stack import Stack, new_prefix
from tests.processes import STARTUP_TIMEOUT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

httpx = pytest.importorskip("httpx", reason="httpx is in the dev group")
pytest.importorskip("fastapi", reason="fastapi is in the dev group")
pytest.importorskip("uvicorn", reason="uvicorn is in the dev group")

APP_REF = "examples.fastapi_app.tasks"


def _no_producer(**_: Any) -> Any:
    raise AssertionError("the web app is the producer here")


@pytest.fixture
def stack(sqs_env: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    prefix = new_prefix()
    backend_url = f"{redis_url}?prefix=cloudq-{prefix}"
    with Stack(
        tmp_path, f"sqs://?prefix={prefix}", backend_url, prefix, _no_producer, APP_REF
    ) as s:
        yield s


def test_post_enqueues_a_worker_runs_it_get_reads_it(stack: Stack) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**stack.env(), "SHOP_API": base}
    server = stack.spawn(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.fastapi_app.main:api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "info",
        ],
        env,
        "uvicorn",
        graceful=True,
    )
    worker = stack.worker(["default"], concurrency=2, env=env)
    server.wait_log(r"Application startup complete", STARTUP_TIMEOUT)
    worker.wait_ready()
    with httpx.Client(base_url=base, timeout=10) as client:
        added = client.post("/add", json={"a": 2, "b": 3})
        assert added.status_code == 202, added.text
        orders = [client.post("/orders", json={"order_id": i, "quantity": 2}) for i in (1, 2, 3)]
        assert all(o.status_code == 202 for o in orders), [o.text for o in orders]

        def read(task_id: str) -> Any:
            reply = client.get(f"/tasks/{task_id}", params={"wait": 5})
            return reply.json() if reply.status_code == 200 else None

        done = wait_for(lambda: read(added.json()["task_id"]), 30, "the add result", stack.logs)
        assert done["result"] == 5
        totals = [
            wait_for(lambda o=o: read(o.json()["task_id"]), 30, "a checkout", stack.logs)["result"]
            for o in orders
        ]
        assert [t["total"] for t in totals] == [202, 204, 206]
        # Each worker thread's loop kept one HTTP pool for its tasks (2 threads: at most 2).
        assert len({t["pool"] for t in totals}) <= 2, totals
        # Not ready: 202 at once, with the wait bounded by the request's own.
        unknown = client.get("/tasks/no-such-task", params={"wait": 0.2})
        assert unknown.status_code == 202 and unknown.json()["ready"] is False
    server.proc.terminate()
    server.wait_exit(15)  # uvicorn re-raises SIGTERM once it has shut down: the log says how
    assert server.find(r"Application shutdown complete"), server.log()  # the lifespan's close
