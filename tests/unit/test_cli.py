"""The cloudq command: clear refusals, the demo, sending from the shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cloudq.cli import main
from tests.apps import pool_app

ROOT = Path(__file__).resolve().parents[2]


def test_worker_without_queues_is_refused_with_the_reason() -> None:
    result = CliRunner().invoke(main, ["-A", "tests.apps.pool_app", "worker"])
    assert result.exit_code == 2
    assert "name the queues this worker serves: -Q" in result.output


def test_unknown_app_module_is_a_clear_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cloudq.cli", "-A", "no_such_module", "worker", "-Q", "q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    assert "cannot import app module 'no_such_module'" in done.stderr
    assert "Traceback" not in done.stderr


def test_call_sends_a_task() -> None:
    before = pool_app.app.broker.stats("low").visible or 0
    result = CliRunner().invoke(
        main,
        [
            "-A",
            "tests.apps.pool_app",
            "call",
            "record",
            "--args",
            '["/dev/null", "x"]',
            "-Q",
            "low",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(result.output.strip()) == 36  # the task id
    assert pool_app.app.broker.stats("low").visible == before + 1
    bad = CliRunner().invoke(main, ["-A", "tests.apps.pool_app", "call", "record", "--args", "{"])
    assert bad.exit_code != 0 and "must be JSON" in bad.output


def test_demo_runs_end_to_end() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cloudq.cli", "demo", "--fast"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == 3
    assert "(attempt 2)" in done.stdout


def test_beat_sends_ticks_and_stops_on_sigterm() -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudq.cli", "-A", "tests.apps.beat_app", "beat", "-l", "info"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = 0
        assert proc.stderr is not None
        for line in proc.stderr:  # EOF if beat dies: then the assert below fails
            sent += "beat: sent" in line
            if sent == 2:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert sent == 2


def test_beat_export() -> None:
    import json

    result = CliRunner().invoke(main, ["-A", "tests.apps.beat_app", "beat", "--export", "json"])
    assert result.exit_code == 0, result.output
    names = set(json.loads(result.output))
    assert names == {"fast", "quarter-hourly"}
    bad = CliRunner().invoke(main, ["-A", "tests.apps.beat_app", "beat", "--export", "eventbridge"])
    assert bad.exit_code != 0 and "whole minutes" in str(bad.exception)
