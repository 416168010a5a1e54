"""Commands that need a state store say so and name the setting; a serverless container's
heartbeat is listed by ``status`` and never commanded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from cloudq.control import heartbeat
from cloudq.control.heartbeat import serverless_heartbeat
from tests.control.conftest import ROOT, Ops, make_ops


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["inspect", "active"],
        ["control", "shutdown"],
        ["events", "--dump"],
        ["result", "some-id"],
    ],
    ids=lambda a: a[0],
)
def test_commands_without_a_result_backend_name_the_setting(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")}
    env.update(PYTHONPATH=str(ROOT), CLOUDQ_RESULT_BACKEND="")
    done = subprocess.run(
        [sys.executable, "-m", "cloudq.cli", "-A", "tests.apps.ops_app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and "result_backend" in done.stderr
    assert "Traceback" not in done.stderr


def test_events_on_dynamodb_say_it_keeps_no_stream(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("sqs_env")
    ops = make_ops(request, "memory", result_backend="dynamodb://cloudq-ops-events?create=1")
    try:
        result = ops.cli("events", "--dump")
        assert "keeps none" in str(result.exception) and "redis://" in str(result.exception)
    finally:
        ops.close()


def test_serverless_heartbeat_is_listed_and_throttled(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The counters are per process: start them afresh (other tests' handlers ran here too).
    fresh = {"next": 0.0, "invocations": 0, "records": 0, "since": time.time()}
    monkeypatch.setattr(heartbeat, "_serverless", fresh)
    ops: Ops = make_ops(request, "memory")
    try:
        context = SimpleNamespace(function_name="shop-worker", log_stream_name="2030/01/01/abc")
        serverless_heartbeat(ops.app, "lambda", context, 3)
        serverless_heartbeat(ops.app, "lambda", context, 2)  # within the interval: not written
        (record,) = ops.records().values()
        assert record["hostname"] == "lambda:shop-worker:2030/01/01/abc"
        assert (record["kind"], record["processed"], record["invocations"]) == ("serverless", 3, 1)
        out = ops.ok("status")
        assert "->  lambda:shop-worker:2030/01/01/abc: OK  (serverless, seen" in out
        refused = ops.cli("control", "shutdown")
        assert refused.exit_code == 69, "control commands do not go to serverless containers"
    finally:
        ops.close()
