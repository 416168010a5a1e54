"""A real ``cloudq dashboard`` subprocess (uvicorn on a free loopback port) next to real
``cloudq worker`` subprocesses on moto SQS, with Redis or DynamoDB as the state store; and a
small HTTP client (urllib) that speaks basic auth."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.fixtures.servers import free_port
from tests.integration.stack import Stack
from tests.processes import CLOUDQ, LoggedProcess

APP_REF = "tests.dashboard.dash_app"
USER, PASSWORD = "ops", "s3cret-pw"
HEARTBEAT = "0.5"


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


class Dashboard:
    def __init__(self, process: LoggedProcess | None, port: int) -> None:
        self.process = process
        """The ``cloudq dashboard`` subprocess; None when it runs in the test's process."""
        self.url = f"http://127.0.0.1:{port}"

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = (USER, PASSWORD),
    ) -> Reply:
        sent = dict(headers or {})
        if auth is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        req = urllib.request.Request(self.url + path, data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return Reply(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, dict(e.headers), e.read())

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def api_post(self, path: str, **kw: Any) -> Reply:
        headers = {"X-Requested-With": "test", **kw.pop("headers", {})}
        return self.request("POST", path, data=b"", headers=headers, **kw)


def start_dashboard(stack: Stack, *extra: str) -> Dashboard:
    port = free_port()
    command = [
        *CLOUDQ, "-A", APP_REF, "dashboard", "--port", str(port), "--address", "127.0.0.1",
        "--basic-auth", f"{USER}:{PASSWORD}", *extra,
    ]  # fmt: skip
    proc = stack.spawn(command, stack.env(), "dashboard", graceful=True)
    proc.wait_log(r"Uvicorn running on", 30)
    return Dashboard(proc, port)


def start_worker(stack: Stack, *args: str) -> LoggedProcess:
    command = [
        *CLOUDQ, "-A", APP_REF, "worker", "-Q", "default", "-c", "2", "-l", "info",
        "--heartbeat-interval", HEARTBEAT, *args,
    ]  # fmt: skip
    worker = stack.spawn(command, stack.env(), f"worker-{len(stack.processes)}")
    worker.wait_ready()
    return worker
