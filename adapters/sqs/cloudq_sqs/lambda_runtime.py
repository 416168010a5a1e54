"""The deployed artifact under AWS's own runtime client: a Lambda Runtime API and its process.

``cloudq lambda-local --runtime ric`` and the tests run the unpacked ``deploy package --target
lambda`` zip as Lambda's Python images do: ``python -m awslambdaric <handler string>`` in the
task root, with the function's environment, polling a Runtime API on loopback. The API is the
documented one (``/2018-06-01/runtime/invocation/next``, ``.../{id}/response``, ``.../{id}/error``,
``/init/error``; the ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms`` and
``Lambda-Runtime-Invoked-Function-Arn`` headers). ``RuntimeClientHandler`` is a handler for
``LocalEventSource``: each event becomes one invocation, and what Lambda does on a timeout or a
crashed runtime (the invocation fails, the environment is thrown away, the next one is a cold
start) happens here too: the poller then lets the whole batch come back.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloudq.logsafe import get_logger

logger = get_logger("cloudq.lambda_runtime")

API_PREFIX = "/2018-06-01/runtime"
NEXT_PATH = f"{API_PREFIX}/invocation/next"
INIT_ERROR_PATH = f"{API_PREFIX}/init/error"
REQUEST_ID_HEADER = "Lambda-Runtime-Aws-Request-Id"
DEADLINE_HEADER = "Lambda-Runtime-Deadline-Ms"
FUNCTION_ARN_HEADER = "Lambda-Runtime-Invoked-Function-Arn"
TRACE_HEADER = "Lambda-Runtime-Trace-Id"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
DEFAULT_HANDLER = "handler.handler"
"""The handler string of a ``deploy package --target lambda`` zip (``deploy/lambda/handler.py``)."""
PYTHON_RUNTIME = f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}"
STOP_SECONDS = 5.0
INIT_SECONDS = 10.0
"""Lambda's limit on a function's init phase (module import) before its first ``next``."""


class InvocationFailed(Exception):
    """The invocation ended without a response: the handler's error, a timeout, a crash."""


@dataclass
class Invocation:
    """One event handed to the runtime, and how it ended."""

    event: dict[str, Any]
    timeout_seconds: float
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    taken: threading.Event = field(default_factory=threading.Event)
    """Set when the runtime's ``next`` took it: the function timeout runs from then (a cold
    start's init is not part of it, as on Lambda)."""
    deadline: float = 0.0
    """``time.monotonic()`` at which it times out, once taken."""
    deadline_ms: int = 0
    """The same instant in Unix milliseconds: the ``Lambda-Runtime-Deadline-Ms`` header."""
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False
    """Given up on (timed out, its runtime died): never handed out, a late answer refused."""
    response: Any = None
    error: dict[str, Any] | None = None


class RuntimeAPI:
    """The Runtime API on a loopback port: ``invoke()`` queues an event, the runtime's ``next``
    takes it, its ``response`` or ``error`` ends it."""

    def __init__(self, function_arn: str, host: str = "127.0.0.1") -> None:
        self.function_arn = function_arn
        self._pending: queue.Queue[Invocation] = queue.Queue()
        self._running: dict[str, Invocation] = {}
        self._lock = threading.Lock()
        self.init_error: dict[str, Any] | None = None
        self._epoch = 0
        """Bumped when a runtime process is gone: its ``next`` calls still waiting take nothing."""
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lambda-runtime-api", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        """``host:port``, as ``AWS_LAMBDA_RUNTIME_API`` takes it."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def invoke(self, event: dict[str, Any], timeout_seconds: float) -> Invocation:
        invocation = Invocation(event, timeout_seconds)
        self._pending.put(invocation)
        return invocation

    def abandon(self, invocation: Invocation) -> None:
        """Forget an invocation that timed out or whose runtime died (a late answer is 410)."""
        with self._lock:
            invocation.abandoned = True
            self._running.pop(invocation.request_id, None)

    def reset(self) -> None:
        """The runtime process is gone: no ``next`` call it left waiting may take an event."""
        with self._lock:
            self._epoch += 1
            self.init_error = None

    def close(self) -> None:
        self.reset()
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Invocation | None:
        epoch = self._epoch
        while epoch == self._epoch:
            try:
                invocation = self._pending.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._lock:
                if invocation.abandoned:
                    continue
                if epoch == self._epoch:
                    self._running[invocation.request_id] = invocation
                    invocation.deadline = time.monotonic() + invocation.timeout_seconds
                    invocation.deadline_ms = int((time.time() + invocation.timeout_seconds) * 1000)
                    invocation.taken.set()
                    return invocation
            self._pending.put(invocation)  # for the new process's next call
        return None

    def _finish(self, request_id: str, *, response: Any = None, error: Any = None) -> bool:
        with self._lock:
            invocation = self._running.pop(request_id, None)
        if invocation is None:
            return False
        invocation.response, invocation.error = response, error
        invocation.done.set()
        return True

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("runtime api: " + format, *args)

            def _reply(
                self, status: int, body: bytes, headers: Mapping[str, str] | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # a runtime process that is gone
                    self.close_connection = True

            def _body(self) -> Any:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    return json.loads(raw) if raw else None
                except ValueError:
                    return {
                        "errorType": "InvalidJSON",
                        "errorMessage": raw.decode(errors="replace"),
                    }

            def do_GET(self) -> None:
                if self.path != NEXT_PATH:
                    self._reply(404, b'{"errorType":"NotFound"}')
                    return
                invocation = api._next()
                if invocation is None:  # asked by a runtime process that is gone
                    self._reply(500, b'{"errorType":"RuntimeGone"}')
                    return
                self._reply(
                    200,
                    json.dumps(invocation.event).encode(),
                    {
                        REQUEST_ID_HEADER: invocation.request_id,
                        DEADLINE_HEADER: str(invocation.deadline_ms),
                        FUNCTION_ARN_HEADER: api.function_arn,
                        TRACE_HEADER: f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
                    },
                )

            def do_POST(self) -> None:
                body = self._body()
                if self.path == INIT_ERROR_PATH:
                    api.init_error = body if isinstance(body, dict) else {"errorMessage": body}
                    self._reply(202, b'{"status":"OK"}')
                    return
                parts = self.path.removeprefix(f"{API_PREFIX}/invocation/").split("/")
                if len(parts) != 2 or parts[1] not in ("response", "error"):
                    self._reply(404, b'{"errorType":"NotFound"}')
                    return
                request_id, kind = parts
                if kind == "error" and not isinstance(body, dict):
                    body = {"errorType": self.headers.get(ERROR_TYPE_HEADER), "errorMessage": body}
                ok = api._finish(
                    request_id,
                    response=body if kind == "response" else None,
                    error=body if kind == "error" else None,
                )
                if ok:
                    self._reply(202, b'{"status":"OK"}')
                else:  # unknown or abandoned request id
                    self._reply(410, b'{"errorType":"InvalidRequestID"}')

        return Handler


def runtime_environment(
    task_root: Path,
    handler: str,
    api_address: str,
    function_name: str,
    timeout_seconds: float,
    memory_mb: int = 128,
    environment: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables Lambda sets for a Python function, then the function's own; AWS
    credentials, region and endpoints come from this process (as the execution role's would)."""
    inherited = {
        k: v for k, v in os.environ.items() if k.startswith("AWS_") or k in ("PATH", "HOME", "TZ")
    }
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    env = {
        **inherited,
        "LANG": "en_US.UTF-8",
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(Path(sys.executable).parent),
        "PYTHONPATH": str(task_root),  # first on sys.path, before the runtime's site-packages
        "_HANDLER": handler,
        "AWS_LAMBDA_RUNTIME_API": api_address,
        "AWS_EXECUTION_ENV": PYTHON_RUNTIME,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(timeout_seconds)),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }
    env.update(environment or {})
    return env


class RuntimeClientHandler:
    """A ``LocalEventSource`` handler that runs each event through ``awslambdaric``.

    The runtime process starts on the first event (a cold start, timed from process start to
    its first response: ``cold_starts``) and is reused while it lives. An invocation that passes
    its deadline kills the process, as Lambda resets the environment on a timeout; a process that
    exits mid-invocation fails it. Either raises ``InvocationFailed``, and the next event starts
    a new process."""

    def __init__(
        self,
        task_root: Path,
        handler: str = DEFAULT_HANDLER,
        *,
        function_name: str = "cloudq-local",
        environment: Mapping[str, str] | None = None,
        timeout_seconds: float = 30.0,
        python: str = sys.executable,
        log: Path | None = None,
    ) -> None:
        if importlib.util.find_spec("awslambdaric") is None:
            raise RuntimeError(
                "--runtime ric needs AWS's runtime interface client, which is not installed: "
                "pip install 'cloudqueue-tasks-sqs[ric]'"
            )
        self.task_root = Path(task_root)
        self.handler = handler
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.python = python
        self.log = log
        arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.api = RuntimeAPI(arn)
        self.env = runtime_environment(
            self.task_root,
            handler,
            self.api.address,
            function_name,
            timeout_seconds,
            environment=environment,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._answered = False
        self.cold_starts: list[float] = []
        """Seconds from each runtime process's start to its first response."""
        self.processes = 0

    def _ensure_process(self) -> subprocess.Popen[bytes]:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        out = self.log.open("ab") if self.log else None
        try:
            self._started = time.monotonic()
            self.proc = subprocess.Popen(
                [self.python, "-m", "awslambdaric", self.handler],
                cwd=self.task_root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
            )
        finally:
            if out:
                out.close()
        self._answered = False
        self.processes += 1
        return self.proc

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        timeout = context.get_remaining_time_in_millis() / 1000
        proc = self._ensure_process()
        invocation = self.api.invoke(event, timeout)
        init_deadline = time.monotonic() + INIT_SECONDS
        while not invocation.done.wait(0.05):
            if proc.poll() is not None:
                self.api.abandon(invocation)
                detail = f"; init error: {self.api.init_error}" if self.api.init_error else ""
                self.api.reset()
                raise InvocationFailed(
                    f"the runtime process exited with code {proc.returncode} during the "
                    f"invocation{detail}"
                )
            if invocation.taken.is_set():
                late = time.monotonic() > invocation.deadline
                reason = f"Task timed out after {timeout:.2f} seconds"
            else:
                late = time.monotonic() > init_deadline
                reason = f"the runtime did not ask for the event within {INIT_SECONDS:.0f} s"
            if late:
                self.api.abandon(invocation)
                self.kill()
                raise InvocationFailed(reason)
        if not self._answered:
            self._answered = True
            self.cold_starts.append(time.monotonic() - self._started)
        if invocation.error is not None:
            raise InvocationFailed(
                f"{invocation.error.get('errorType')}: {invocation.error.get('errorMessage')}"
            )
        response = invocation.response
        return response if isinstance(response, dict) else {}

    def kill(self) -> None:
        """End the runtime process (Lambda's reset of the environment); the next event starts
        a new one."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_SECONDS)
        self.api.reset()

    def close(self) -> None:
        self.kill()
        self.api.close()
