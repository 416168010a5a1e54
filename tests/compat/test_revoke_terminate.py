"""``revoke(terminate=True)`` stops a running task through the control channel, in both pools:
the threads pool raises ``TaskRevokedError`` in the task's thread, the processes pool kills the
child and replaces it. The message is acknowledged (never dead-lettered), state REVOKED; and
``cloudq revoke`` / ``cloudq inspect revoked`` on the command line."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloudq.cli import main
from cloudq.errors import TaskRevokedError
from cloudq.results.base import State
from cloudq.testing import wait_for
from cloudq.worker import PoolKind, Worker
from tests.compat import revoke_app

HEARTBEAT = 0.1
REF = "tests.compat.revoke_app:app"


@contextmanager
def _worker(pool: PoolKind) -> Iterator[Worker]:
    app = revoke_app.app
    worker = Worker(
        app,
        ["default"],
        concurrency=1,
        pool=pool,
        app_ref=REF,
        poll_seconds=0.05,
        heartbeat_seconds=HEARTBEAT,
        hostname=f"w-{uuid.uuid4().hex[:6]}@test",
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.hostname in app.backend.control_workers(), timeout=30)  # type: ignore[union-attr]
        yield worker
    finally:
        worker.stop()
        thread.join(60)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_terminate_stops_a_running_task(pool: PoolKind, tmp_path: Path) -> None:
    app = revoke_app.app
    app.ensure_queue("default")
    marker = str(tmp_path / "spin")
    before = app.broker.stats("default").dead_lettered or 0
    with _worker(pool) as worker:
        result = app.tasks["revoke.spin"].delay(marker, 60)
        wait_for(lambda: Path(f"{marker}.started").exists(), timeout=60, message="started")
        replies = app.control.revoke(result.id, terminate=True, wait=True, timeout=10)
        mine = [r for r in replies if r.hostname == worker.hostname]
        assert mine and mine[0].ok, replies
        assert f"terminated: {result.id}" in mine[0].reply
        with pytest.raises(TaskRevokedError):
            result.get(timeout=20)
        assert result.state == State.REVOKED
        # The slot (a new child, for processes) runs the next task.
        done = tmp_path / "after"
        assert app.tasks["revoke.touch"].delay(str(done)).get(timeout=60) == str(done)
        wait_for(lambda: worker.active_tasks() == [], timeout=10, message="idle")
    assert not Path(f"{marker}.done").exists()
    stats = app.broker.stats("default")
    assert (stats.dead_lettered or 0) == before, "acknowledged, not dead-lettered"
    assert stats.visible == 0 and stats.in_flight == 0


def test_terminate_of_a_task_not_running_anywhere_only_revokes_it() -> None:
    app = revoke_app.app
    with _worker("threads") as worker:
        task_id = str(uuid.uuid4())
        replies = app.control.revoke(task_id, terminate=True, wait=True, timeout=10)
        mine = [r for r in replies if r.hostname == worker.hostname]
        assert mine and mine[0].ok and "none running here" in mine[0].reply


def test_cli_revoke_and_inspect_revoked(tmp_path: Path) -> None:
    app = revoke_app.app
    app.ensure_queue("default")
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    with _worker("threads") as worker:
        runner = CliRunner()
        out = runner.invoke(main, ["-A", REF, "revoke", *ids])
        assert out.exit_code == 0, out.output
        assert "revoked 2 task id(s)" in out.output

        def listed() -> list[str]:
            shown = runner.invoke(main, ["-A", REF, "inspect", "revoked", "--json"])
            assert shown.exit_code == 0, shown.output
            return list(json.loads(shown.stdout).get(worker.hostname, []))

        wait_for(lambda: set(ids) <= set(listed()), timeout=10, message="inspect revoked")
        text = runner.invoke(main, ["-A", REF, "inspect", "revoked", "-d", worker.hostname])
        assert all(f"* {i}" in text.output for i in ids), text.output
