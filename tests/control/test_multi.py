"""``cloudq multi`` with real worker subprocesses, pid files and log files; and the worker's own
``--pidfile`` / ``--logfile`` / ``-n`` expansions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cloudq.control.multi import alive, expand, nodename, parse, read_pid
from cloudq.testing import wait_for
from tests.control.conftest import ROOT, make_ops

pytestmark = pytest.mark.timeout(90)

HOST = socket.gethostname()


def cloudq(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    full.setdefault("CLOUDQ_WORKER_POLL_SECONDS", "0.5")  # a stop waits out one receive
    return subprocess.run(
        [sys.executable, "-m", "cloudq.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_expansions_follow_celery() -> None:
    assert expand("%n.pid", "w1@box.example.com") == "w1.pid"
    assert expand("%n%I.log", "w1@box") == "w1.log"
    assert expand("/var/run/%h/%n-%d-%i.%%", "w1@box.example.com") == (
        "/var/run/box.example.com/w1-example.com-0.%"
    )
    assert expand("%p", "w1@box") == "w1@box"
    assert nodename("w1") == f"w1@{HOST}"
    assert nodename("w1@%h") == f"w1@{HOST}"
    plan = parse(["3", "-A", "tasks", "--pidfile=/run/%n.pid", "-l", "info"], None, Path("/x"))
    assert [n.nodename for n in plan.nodes] == [f"cloudq{i}@{HOST}" for i in (1, 2, 3)]
    assert plan.nodes[1].pidfile == Path("/run/cloudq2.pid")
    assert plan.nodes[0].logfile == Path("/x/cloudq1.log")
    assert (plan.app_ref, plan.worker_args) == ("tasks", ["-l", "info"])


def test_multi_start_restart_stopwait_with_pid_and_log_files(tmp_path: Path) -> None:
    args = ["-A", "tests.apps.ops_app", "-l", "info", "-Q", "default", "--heartbeat-interval", "1"]
    try:
        started = cloudq(tmp_path, "multi", "start", "w1", "w2", *args)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"> w1@{HOST}: OK (pid" in started.stdout
        pids = {name: read_pid(tmp_path / f"{name}.pid") for name in ("w1", "w2")}
        assert all(pid is not None and alive(pid) for pid in pids.values()), pids
        for name in ("w1", "w2"):
            logfile = tmp_path / f"{name}.log"

            def ready(path: Path = logfile) -> bool:
                return "ready: queues default" in path.read_text()

            wait_for(ready, timeout=20, message=f"{name} ready in its log")
            assert f"worker {name}@{HOST} ready" in logfile.read_text()

        again = cloudq(tmp_path, "multi", "start", "w1", *args)
        assert f"already running (pid {pids['w1']})" in again.stdout

        restarted = cloudq(tmp_path, "multi", "restart", "w1", *args)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        new = read_pid(tmp_path / "w1.pid")
        assert new is not None and new != pids["w1"] and alive(new)
        assert not alive(pids["w1"] or 0), "the old process was stopped"
        log = (tmp_path / "w1.log").read_text()
        assert "stopped: 0 processed" in log, "stopped gracefully, logged in the same file"

        stopped = cloudq(tmp_path, "multi", "stopwait", "w1", "w2")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"> w2@{HOST}: OK" in stopped.stdout
        assert not alive(new) and not alive(pids["w2"] or 0)
        assert not (tmp_path / "w1.pid").exists() and not (tmp_path / "w2.pid").exists()
        down = cloudq(tmp_path, "multi", "stop", "w1")
        assert f"> w1@{HOST}: DOWN" in down.stdout
    finally:
        cloudq(tmp_path, "multi", "kill", "w1", "w2")


def test_multi_custom_paths_and_a_worker_that_cannot_start(tmp_path: Path) -> None:
    args = ["-A", "tests.apps.ops_app", "-Q", "default", "--heartbeat-interval", "1"]
    paths = ["--pidfile=run/%n.pid", "--logfile", "logs/%n-%h.log"]
    try:
        started = cloudq(tmp_path, "multi", "start", "a", *paths, *args)
        assert started.returncode == 0, started.stdout + started.stderr
        pid = read_pid(tmp_path / "run" / "a.pid")
        assert pid is not None and alive(pid)
        assert (tmp_path / "logs" / f"a-{HOST}.log").exists()
        # A second worker on the same pid file refuses to start.
        clash = cloudq(tmp_path, *args[:2], "worker", *args[2:], "--pidfile", "run/a.pid")
        assert clash.returncode == 2 and f"names process {pid}, which is running" in clash.stderr
        stopped = cloudq(tmp_path, "multi", "stopwait", "a", *paths)
        assert stopped.returncode == 0 and not alive(pid)

        broken = cloudq(tmp_path, "multi", "start", "b", "-A", "no_such_module", "-Q", "q")
        assert broken.returncode == 1 and "FAILED: exited with code 2" in broken.stdout
        assert "cannot import app module" in (tmp_path / "b.log").read_text()
    finally:
        cloudq(tmp_path, "multi", "kill", "a", *paths)


def test_multi_workers_on_sqs_are_seen_and_commanded_through_redis(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ops = make_ops(request, "sqs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")}
    env["CLOUDQ_BROKER_URL"] = ops.app.conf.broker_url
    env["CLOUDQ_RESULT_BACKEND"] = str(ops.app.conf.result_backend)
    args = [
        "-A",
        "tests.apps.ops_app",
        "-Q",
        "default",
        "--heartbeat-interval",
        "0.5",
        "-l",
        "info",
    ]
    try:
        started = cloudq(tmp_path, "multi", "start", "w1", "w2", *args, env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        names = {f"w1@{HOST}", f"w2@{HOST}"}
        wait_for(lambda: names <= set(ops.records()), timeout=20, message="both heartbeats")
        out = ops.ok("status")
        assert f"->  w1@{HOST}: OK" in out and "2 nodes online." in out
        pid1 = read_pid(tmp_path / "w1.pid")
        assert ops.json("inspect", "stats")[f"w1@{HOST}"]["pid"] == pid1

        assert ops.app.tasks["ops.add"].delay(2, 2).get(timeout=20) == 4
        shut = ops.ok("control", "shutdown", "-d", "w1")
        assert f"->  w1@{HOST}: OK" in shut
        wait_for(lambda: not alive(pid1 or 0), timeout=20, message="w1 exits")
        assert not (tmp_path / "w1.pid").exists(), "the worker removed its pid file"
        assert set(ops.records()) == {f"w2@{HOST}"}, "a stopped worker leaves the list at once"

        stopped = cloudq(tmp_path, "multi", "stopwait", "w1", "w2", env=env)
        assert f"> w1@{HOST}: DOWN" in stopped.stdout and f"> w2@{HOST}: OK" in stopped.stdout
        assert ops.cli("status").exit_code == 69
    finally:
        cloudq(tmp_path, "multi", "kill", "w1", "w2", env=env)
        ops.close()
