"""The cloudq command: clear refusals, the demo, sending from the shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cloudq.cli import main
from tests.apps import pool_app

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_without_queues_serves_every_queue_the_app_names() -> None:
    """Celery's ``celery -A proj worker`` needs no -Q: neither does ours, and it also serves the
    queues tasks and static routes name, the default first."""
    from cloudq import App
    from cloudq.routes import app_queues

    app = App("q", broker="memory://cli-queues", task_default_queue="celery")
    app.conf.task_routes = {"mail.*": {"queue": "mail"}, "x.y": "bulk"}

    @app.task(name="t.high", queue="high")
    def high() -> None: ...

    assert app_queues(app) == ["celery", "high", "bulk", "mail"]


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


def test_app_is_found_as_celery_finds_it(tmp_path: Path) -> None:
    """``-A proj`` finds ``proj.celery:app`` (next-steps' layout), ``-A mod.app`` a dotted
    attribute, ``-A mod`` an App under ``celery`` or the one App the module holds."""
    import importlib

    import pytest

    from cloudq.errors import ConfigurationError
    from cloudq.pool import load_app

    pkg = tmp_path / "findproj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "celery.py").write_text("from cloudq import App\napp = App('findproj')\n")
    (tmp_path / "findcel.py").write_text("from cloudq import App\ncelery = App('c')\n")
    (tmp_path / "findone.py").write_text("from cloudq import App\nmine = App('one')\n")
    (tmp_path / "findtwo.py").write_text("from cloudq import App\na = App('a')\nb = App('b')\n")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        assert load_app("findproj").main == "findproj"
        assert load_app("findproj.celery.app").main == "findproj"
        assert load_app("findproj.celery:app").main == "findproj"
        assert load_app("findcel").main == "c"
        assert load_app("findone").main == "one"
        with pytest.raises(ConfigurationError, match="no cloudq App found in 'findtwo'"):
            load_app("findtwo")
        with pytest.raises(ConfigurationError, match="cannot import app module 'nosuch"):
            load_app("nosuchmodule.app")
    finally:
        sys.path.remove(str(tmp_path))


def test_a_metrics_port_in_use_is_a_clear_error_before_the_worker_starts() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["-A", "tests.apps.hooks_app", "worker", "-Q", "q", "--metrics-port", str(port)]
        )
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{port} is in use" in result.output
