"""The deployed artifact as Lambda runs it: the ``deploy package --target lambda`` zip, unpacked,
started by AWS's runtime interface client (``python -m awslambdaric handler.handler``) with the
function's environment, polling our Runtime API (``cloudq_sqs.lambda_runtime``), fed real SQS
messages on moto by ``lambda-local``'s event source (``LocalEventSource``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import dead_letter_queue_name
from cloudq.deploy.package import build_package, plan_package
from cloudq.pool import load_app
from cloudq.testing import wait_for
from cloudq_sqs.lambda_local import LocalEventSource
from cloudq_sqs.lambda_runtime import RuntimeClientHandler

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

APP = """
import os
import time

import cloudq
from cloudq import App

app = App("ric", task_max_retries=0)


def _note(path: str, word: str) -> None:
    with open(path, "a") as out:
        out.write(f"{os.getpid()} {word} {cloudq.__file__}\\n")


@app.task(name="ric.note")
def note(path: str, word: str) -> str:
    _note(path, word)
    return word


@app.task(name="ric.nap")
def nap(path: str, word: str, seconds: float) -> None:
    time.sleep(seconds)
    _note(path, word)


@app.task(name="ric.crash_once")
def crash_once(path: str) -> None:
    if not os.path.exists(path + ".crashed"):
        open(path + ".crashed", "w").close()
        os._exit(3)  # the runtime process dies mid-invocation
    _note(path, "after-crash")


@app.task(name="ric.poison")
def poison() -> None:
    raise ValueError("poison")
"""


@dataclass
class Function:
    app: App
    handler: RuntimeClientHandler
    task_root: Path
    notes: Path
    log: Path

    def source(self, timeout_seconds: float) -> LocalEventSource:
        return LocalEventSource(
            self.app, self.handler, ["default"], timeout_seconds=timeout_seconds
        )

    def lines(self) -> list[list[str]]:
        if not self.notes.exists():
            return []
        return [line.split(" ") for line in self.notes.read_text().splitlines()]


@dataclass
class Package:
    name: str
    src: Path
    task_root: Path


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Package]:
    """The app packaged once per module and unpacked as Lambda's task root."""
    tmp = tmp_path_factory.mktemp("ric")
    name = f"ric_{uuid.uuid4().hex[:8]}"
    src = tmp / "src"
    src.mkdir()
    (src / f"{name}.py").write_text(textwrap.dedent(APP))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(src))
        mp.chdir(src)
        build_package(plan_package(name, "lambda"), tmp / "function.zip")
    with zipfile.ZipFile(tmp / "function.zip") as archive:
        archive.extractall(tmp / "task")
    yield Package(name, src, tmp / "task")
    sys.modules.pop(name, None)


@pytest.fixture
def function(
    package: Package, sqs_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Function]:
    """A runtime-client handler on the task root, queues of this test's own."""
    monkeypatch.syspath_prepend(str(package.src))
    settings = {
        "CLOUDQ_BROKER_URL": f"sqs://?prefix=ric{uuid.uuid4().hex[:8]}-",
        "CLOUDQ_QUEUE_LEASE_SECONDS": "2",
        "CLOUDQ_QUEUE_MAX_RECEIVE_COUNT": "5",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop(package.name, None)  # a fresh App for this test's settings
    app = load_app(package.name)
    app.ensure_queue("default")
    log = tmp_path / "runtime.log"
    handler = RuntimeClientHandler(
        package.task_root,
        "handler.handler",
        function_name=package.name,
        environment={"CLOUDQ_APP": package.name, **settings},
        log=log,
    )
    try:
        yield Function(app, handler, package.task_root, tmp_path / "notes.log", log)
    finally:
        handler.close()
        app.close()


def feed(source: LocalEventSource, until: Any, fn: Function, timeout: float = 30) -> None:
    wait_for(
        lambda: source.poll_once("default", wait_seconds=1) >= 0 and until(),
        timeout=timeout,
        interval=0,
        message=f"the runtime's work; its log:\n{fn.log.read_text(errors='replace')[-3000:]}"
        if fn.log.exists()
        else "the runtime's work",
    )


def test_the_packaged_zip_runs_under_awslambdaric_warm_after_a_cold_start(
    function: Function,
) -> None:
    notes = str(function.notes)
    for word in ("a", "b", "c"):
        function.app.tasks["ric.note"].delay(notes, word)
    function.app.tasks["ric.poison"].delay()
    source = function.source(timeout_seconds=30)

    feed(source, lambda: len(function.lines()) == 3, function)

    pids = {line[0] for line in function.lines()}
    assert len(pids) == 1 and pids != {str(os.getpid())}, "one runtime process, reused warm"
    assert {line[2] for line in function.lines()} == {
        str(function.task_root / "cloudq" / "__init__.py")
    }
    assert function.handler.processes == 1
    [cold] = function.handler.cold_starts
    print(f"\nawslambdaric cold start (process start to first response): {cold:.2f}s")
    assert cold < 20
    # The poison task was dead-lettered by the handler: a success for the mapping, deleted.
    dlq = dead_letter_queue_name("default")
    feed(source, lambda: (function.app.broker.stats(dlq).visible or 0) >= 1, function)
    assert source.stats.errors == []


def test_the_deadline_header_makes_a_partial_batch_failure(function: Function) -> None:
    """A 4.5 s function, three 1.5 s tasks in one event. The handler reads the deadline that
    awslambdaric got from ``Lambda-Runtime-Deadline-Ms``: the second runs with the 2 s left less
    its 1 s margin, and the third, with under 2 s left, is not started: it is reported in
    ``batchItemFailures``, left on the queue, and runs in a later event."""
    notes = str(function.notes)
    function.app.tasks["ric.note"].delay(notes, "warm")  # the cold start is not the test's
    source = function.source(timeout_seconds=4.5)
    feed(source, lambda: len(function.lines()) == 1, function)
    for word in ("one", "two", "three"):
        function.app.tasks["ric.nap"].delay(notes, word, 1.5)
    invocations = source.stats.invocations

    assert source.poll_once("default", wait_seconds=2) == 3, "the three came in one event"
    assert source.stats.invocations == invocations + 1
    assert source.stats.failed == 1, "one record reported in batchItemFailures"
    assert [line[1] for line in function.lines()] == ["warm", "one", "two"]

    feed(source, lambda: len(function.lines()) == 4, function)
    assert function.lines()[-1][1] == "three"
    assert function.handler.processes == 1


def test_a_crashed_runtime_fails_the_batch_and_the_next_event_starts_cold(
    function: Function,
) -> None:
    notes = str(function.notes)
    function.app.tasks["ric.crash_once"].delay(notes)
    source = function.source(timeout_seconds=30)

    feed(source, lambda: len(function.lines()) == 1, function)

    assert source.stats.errors and "exited with code 3" in source.stats.errors[0]
    assert function.lines()[0][1] == "after-crash"
    assert function.handler.processes == 2, "a new runtime process after the crash"
    assert len(function.handler.cold_starts) == 1, "the crashed one never answered"


def test_lambda_local_runtime_ric_runs_the_zip_from_the_command_line(
    package: Package, sqs_env: str, tmp_path: Path
) -> None:
    """``cloudq lambda-local --runtime ric --package function.zip``: the same path, as a user
    runs it; SIGTERM stops it cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")}
    env["CLOUDQ_BROKER_URL"] = f"sqs://?prefix=ric{uuid.uuid4().hex[:8]}-"
    env["PYTHONPATH"] = str(package.src)
    zip_path = package.task_root.parent / "function.zip"
    log = tmp_path / "lambda-local.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudq.cli", "-A", package.name, "lambda-local",
             "-Q", "default", "--runtime", "ric", "--package", str(zip_path), "--timeout", "10"],
            cwd=package.src, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CLOUDQ_BROKER_URL", env["CLOUDQ_BROKER_URL"])
            mp.syspath_prepend(str(package.src))
            sys.modules.pop(package.name, None)
            app = load_app(package.name)
        notes = tmp_path / "notes.log"
        wait_for(lambda: b"feeding default" in log.read_bytes(), 30, message="lambda-local started")
        app.tasks["ric.note"].delay(str(notes), "cli")
        wait_for(notes.exists, 30, message="the task run through lambda-local")
        line = notes.read_text().split()
        assert line[1] == "cli" and line[2].startswith(str(tempfile.gettempdir()))
        assert "/cloudq-task-" in line[2], "cloudq ran from the unpacked zip"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text(errors="replace")
        assert b"1 invocation(s), 1 record(s), 0 failed" in log.read_bytes()
        app.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


HANDLERS = """
import time


def sleeps(event, context):
    time.sleep(60)


def fails(event, context):
    raise KeyError("no such record")
"""


@pytest.mark.parametrize("handler", ["sleeps", "fails"])
def test_a_timed_out_or_failed_invocation_fails_the_whole_batch(
    function: Function, tmp_path: Path, handler: str
) -> None:
    """A handler past its deadline is cut off and its process replaced; one that raises is
    reported on ``/error``. Either way nothing is deleted: the record comes back."""
    (function.task_root / "odd_handlers.py").write_text(HANDLERS)
    odd = RuntimeClientHandler(
        function.task_root,
        f"odd_handlers.{handler}",
        function_name="odd",
        log=tmp_path / "odd.log",
    )
    try:
        function.app.tasks["ric.note"].delay(str(function.notes), "never")
        source = LocalEventSource(function.app, odd, ["default"], timeout_seconds=2)
        wait_for(
            lambda: source.poll_once("default", wait_seconds=1) > 0,
            timeout=20,
            interval=0,
            message="an invocation",
        )
        assert source.stats.failed == 1 and source.stats.deleted == 0
        [error] = source.stats.errors
        if handler == "sleeps":
            assert "Task timed out after 2.00 seconds" in error
            assert odd.proc is not None and odd.proc.poll() is not None, "the process is gone"
        else:
            assert "KeyError" in error and "no such record" in error
            assert odd.proc is not None and odd.proc.poll() is None, "still warm"
    finally:
        odd.close()
    assert function.lines() == []
