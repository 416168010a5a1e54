"""Issue 26, finding 4: a task's BaseException is that task's failure, never a dead pool slot.

``execute`` and the worker's runner caught only ``Exception``: a task raising ``SystemExit``,
``KeyboardInterrupt`` or its own ``BaseException`` subclass killed its pool thread (or the
processes-pool child) for good, while the worker kept heart-beating, receiving and renewing
leases for messages it would never run. Now such a task is retried by its policy, then
dead-lettered with the reason; the slot survives; and the real shutdown signals still stop the
worker gracefully (SIGINT to a processes-pool child is not the child's to act on).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import Delivery
from cloudq.envelope import sign
from cloudq.execute import execute
from cloudq.outcome import Ack, DeadLetter, RetryAt
from cloudq.pool import ProcessExecutor
from cloudq.testing import FakeClock, start_worker, wait_for
from tests.apps import trust_app

ROOT = Path(__file__).resolve().parents[2]
KINDS = sorted(trust_app.RAISES)
TYPE_NAMES = {"exit": "SystemExit", "interrupt": "KeyboardInterrupt", "custom": "Custom"}


def make_app(fake_clock: bool = True) -> App:
    name = uuid.uuid4().hex
    clock = FakeClock() if fake_clock else None
    return App("t", broker=f"memory://{name}", backend=f"memory://{name}", clock=clock)


def delivery_of(app: App, task: str, *args: Any) -> Delivery:
    env = app.tasks[task].envelope(list(args), {})
    return Delivery(env.queue, sign(env, app.signing_keys).encode(), env.id, 1)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", KINDS)
def test_execute_dead_letters_a_task_base_exception_with_its_reason(
    kind: str, is_async: bool
) -> None:
    app = make_app()
    error = trust_app.RAISES[kind]
    if is_async:

        @app.task(name="bad")
        async def bad_async() -> None:
            raise error("from the task")
    else:

        @app.task(name="bad")
        def bad() -> None:
            raise error("from the task")

    outcome = execute(delivery_of(app, "bad"), app)
    assert isinstance(outcome, DeadLetter), outcome
    assert TYPE_NAMES[kind] in outcome.reason and "from the task" in outcome.reason


def test_a_base_exception_is_retried_by_the_task_policy() -> None:
    app = make_app()

    @app.task(name="bad", autoretry_for=(SystemExit,), max_retries=1)
    def bad() -> None:
        raise SystemExit(3)

    first = execute(delivery_of(app, "bad"), app)
    assert isinstance(first, RetryAt), first
    assert isinstance(app.clock, FakeClock)
    app.clock.advance(first.envelope.retry.default_delay)
    body = sign(first.envelope, app.signing_keys).encode()
    last = execute(Delivery("default", body, "m-2", 1), app)
    assert isinstance(last, DeadLetter) and "SystemExit" in last.reason


def test_eager_apply_reports_a_system_exit_as_the_task_failure() -> None:
    app = make_app()

    @app.task(name="bad")
    def bad() -> None:
        raise SystemExit(3)

    result = bad.apply()
    assert result.failed() and "SystemExit" in str(result.traceback or result.result)


def test_eager_apply_lets_a_keyboard_interrupt_stop_the_caller() -> None:
    """``apply()`` runs in the caller's thread: a Ctrl-C there is the caller's, not the task's."""
    app = make_app()

    @app.task(name="bad")
    def bad() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bad.apply()


def test_threads_pool_slot_survives_base_exceptions() -> None:
    app = make_app(fake_clock=False)
    ran: list[str] = []

    @app.task(name="bad")
    def bad(kind: str) -> None:
        raise trust_app.RAISES[kind]("from the task")

    @app.task(name="good")
    def good() -> None:
        ran.append("good")

    for kind in KINDS:
        bad.delay(kind)
    with start_worker(app, ["default"], concurrency=1, prefetch=0) as worker:
        good.delay()
        wait_for(lambda: ran == ["good"], timeout=10, message="the next task ran in the slot")
        wait_for(lambda: worker.failed == len(KINDS), timeout=10, message="failures counted")
    dead = app.broker.receive("default-dlq", 10, 0, 30)
    reasons = sorted(d.attributes["cloudq-dead-letter-reason"] for d in dead)
    assert len(reasons) == len(KINDS)
    for kind in KINDS:
        assert any(TYPE_NAMES[kind] in r for r in reasons), reasons


@pytest.fixture(scope="module")
def executor() -> Any:
    ex = ProcessExecutor(trust_app.app, "tests.apps.trust_app:app", None)
    yield ex
    ex.close()


@pytest.mark.parametrize("task", ["raise_base", "raise_base_async"])
def test_processes_pool_child_survives_base_exceptions(
    executor: ProcessExecutor, task: str
) -> None:
    app = trust_app.app
    assert isinstance(executor.run(delivery_of(app, "pid")), Ack)
    pid = executor.pid
    for kind in KINDS:
        outcome = executor.run(delivery_of(app, task, kind))
        assert isinstance(outcome, DeadLetter), outcome
        assert TYPE_NAMES[kind] in outcome.reason, outcome.reason
        assert executor.pid == pid, "the child died"


def test_sigint_to_a_processes_pool_child_is_not_a_task_failure(
    executor: ProcessExecutor, tmp_path: Path
) -> None:
    """A terminal's Ctrl-C reaches the whole process group: the parent governs shutdown, the
    child finishes its task."""
    app = trust_app.app
    assert isinstance(executor.run(delivery_of(app, "pid")), Ack)
    pid = executor.pid
    assert pid is not None
    started = tmp_path / "started"
    got: list[Any] = []
    runner = threading.Thread(
        target=lambda: got.append(executor.run(delivery_of(app, "wait_marker", str(started), 1.0)))
    )
    runner.start()
    wait_for(started.exists, timeout=20, message="task started in the child")
    os.kill(pid, signal.SIGINT)
    runner.join(timeout=20)
    assert got and isinstance(got[0], Ack), got
    assert executor.pid == pid


class Lines:
    """A subprocess's stderr lines, read in a thread (so waiting on them has a timeout)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        self.thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.thread.start()

    def text(self) -> str:
        return "".join(self.lines)


@pytest.mark.parametrize(
    ("pool", "signum", "to_group"),
    [
        ("threads", signal.SIGTERM, False),
        ("processes", signal.SIGTERM, False),
        ("processes", signal.SIGINT, True),  # Ctrl-C in a terminal: the whole group
    ],
)
def test_signal_stops_the_worker_gracefully_after_base_exception_tasks(
    tmp_path: Path, pool: str, signum: int, to_group: bool
) -> None:
    env = {**os.environ, "TRUST_APP_SEED": str(tmp_path), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "cloudq.cli", "-A", "tests.apps.trust_app", "worker"]
    command += ["-Q", "default", "-c", "1", "-P", pool, "--prefetch", "0", "-l", "info"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out = Lines(proc)
        wait_for(
            lambda: "slow task running" in out.text() or proc.poll() is not None,
            timeout=30,
            message="the slow task running after the BaseException tasks",
        )
        assert "slow task running" in out.text(), out.text()
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        code = proc.wait(timeout=30)
        out.thread.join(timeout=5)
    finally:
        proc.kill()
    text = out.text()
    assert code == 0, text
    assert (tmp_path / "slow.done").read_text() == "done", "the running task was not finished"
    for kind in KINDS:
        assert f"{TYPE_NAMES[kind]}: from the task" in text, text
