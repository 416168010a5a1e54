"""Revoke end to end on moto SQS with Redis, through real ``cloudq worker`` subprocesses: a
revoked countdown task never runs and ``get()`` raises; ``cloudq revoke --terminate`` stops a
running task in both pools, acknowledged and not dead-lettered."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudq.errors import TaskRevokedError
from cloudq.results.base import State
from tests.compat import revoke_app
from tests.integration.stack import Stack, new_prefix
from tests.processes import CLOUDQ, ROOT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP_REF = "tests.compat.revoke_app"
HEARTBEAT = "0.5"


@pytest.fixture
def stack(sqs_env: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    prefix = new_prefix()
    backend_url = f"{redis_url}?prefix=cloudq-{prefix}"
    with Stack(
        tmp_path, f"sqs://?prefix={prefix}", backend_url, prefix, revoke_app.make_app, APP_REF
    ) as s:
        yield s


def _worker(stack: Stack, pool: str) -> object:
    args = ["-Q", "default", "-c", "1", "-P", pool, "-l", "info"]
    command = [*CLOUDQ, "-A", APP_REF, "worker", *args, "--heartbeat-interval", HEARTBEAT]
    worker = stack.spawn(command, stack.env(), f"worker-{pool}")
    worker.wait_ready()
    return worker


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLOUDQ, "-A", APP_REF, *args],
        cwd=ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_revoked_countdown_task_never_runs(stack: Stack) -> None:
    producer = stack.producer()
    producer.ensure_queue("default")
    marker = stack.tmp / "ran"
    result = producer.tasks["revoke.touch"].apply_async((str(marker),), countdown=3)
    done = _cli(stack, "revoke", result.id)
    assert done.returncode == 0, done.stderr
    # Started once the revoke is recorded: however slow the CLI was, the countdown cannot have
    # run out with no worker knowing (the revoked ids are shared, so a worker started later
    # learns them as one running does).
    worker = _worker(stack, "threads")
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert not marker.exists()
    stats = producer.broker.stats("default")
    wait_for(
        lambda: producer.broker.stats("default").in_flight == 0, 15, "acknowledged", stack.logs
    )
    assert stats.dead_lettered == 0
    assert worker.find(rf"revoke.touch\[{result.id}\] revoked")  # type: ignore[attr-defined]


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_revoke_terminate_stops_a_running_task(stack: Stack, pool: str) -> None:
    producer = stack.producer()
    producer.ensure_queue("default")
    _worker(stack, pool)
    marker = str(stack.tmp / "spin")
    result = producer.tasks["revoke.spin"].delay(marker, 60)
    wait_for(lambda: Path(f"{marker}.started").exists(), 30, "the task to start", stack.logs)
    done = _cli(stack, "revoke", "--terminate", result.id)
    assert done.returncode == 0, done.stdout + done.stderr + stack.logs()
    assert f"terminated: {result.id}" in done.stdout
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert producer.AsyncResult(result.id).state == State.REVOKED
    wait_for(
        lambda: producer.broker.stats("default").in_flight == 0, 15, "acknowledged", stack.logs
    )
    assert producer.broker.stats("default").dead_lettered == 0
    assert not Path(f"{marker}.done").exists()
