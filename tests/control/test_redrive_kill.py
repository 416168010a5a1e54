"""``dlq redrive`` SIGKILLed half-way on SQS loses nothing: every message is in the queue, in
the dead-letter queue, or both; a second redrive finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from cloudq import group
from cloudq.adapters.base import dead_letter_queue_name
from cloudq.envelope import decode
from cloudq.testing import wait_for
from tests.control.conftest import ROOT, Ops, make_ops

pytestmark = pytest.mark.timeout(90)

COUNT = 40  # four batches of ten
LEASE = 3


def peek_all(ops: Ops, queue: str) -> list[str]:
    """Task ids of every message in ``queue``: each read once (held), then all released."""
    held = []
    while got := ops.app.broker.receive(queue, 10, 0, 60):  # moto answers short polls fully
        held += got
    for start in range(0, len(held), 10):
        ops.app.broker.release(held[start : start + 10], 0)
    return [decode(d.body).id for d in held]


def test_redrive_killed_between_send_and_delete_loses_nothing(
    request: pytest.FixtureRequest,
) -> None:
    ops = make_ops(request, "sqs", queue_lease_seconds=LEASE)
    dlq = dead_letter_queue_name("fragile")
    proc: subprocess.Popen[str] | None = None
    try:
        fail: Any = ops.app.tasks["ops.fail"]
        sent = group(fail.s(f"n{i}") for i in range(COUNT)).delay()
        ids = {r.id for r in sent.results}
        with ops.worker(["fragile"], concurrency=10):
            wait_for(
                lambda: ops.app.broker.stats("fragile").dead_lettered == COUNT,
                timeout=30,
                message="all dead-lettered",
            )

        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")}
        env["PYTHONPATH"] = str(ROOT)
        env["CLOUDQ_BROKER_URL"] = ops.app.conf.broker_url
        env["CLOUDQ_RESULT_BACKEND"] = str(ops.app.conf.result_backend)
        env["CLOUDQ_QUEUE_LEASE_SECONDS"] = str(LEASE)
        script = ROOT / "tests" / "control" / "slow_redrive.py"
        args = ["-A", "tests.apps.ops_app", "dlq", "redrive", "-Q", "fragile"]
        proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # EOF if it dies first: then the assert below fails
            lines.append(line)
            if line.strip() == "sent 2":
                break
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert [x.strip() for x in lines][-4:] == ["sending 1", "sent 1", "sending 2", "sent 2"]

        # Batch 2 was sent and not yet deleted; its dead letters come back after their lease.
        wait_for(
            lambda: ops.app.broker.stats(dlq).in_flight == 0,
            timeout=LEASE + 10,
            message="the killed batch's lease to end",
        )
        in_queue, in_dlq = peek_all(ops, "fragile"), peek_all(ops, dlq)
        assert set(in_queue) | set(in_dlq) == ids, "lost: " + str(ids - {*in_queue, *in_dlq})
        assert len(in_queue) == 20, "two batches sent"
        assert len(set(in_queue) & set(in_dlq)) == 10, "the killed batch was sent, not deleted"

        # A second redrive finishes the job: the dead-letter queue empty, every task queued.
        assert "Redrove 30 message(s)" in ops.ok("dlq", "redrive", "-Q", "fragile")
        assert set(peek_all(ops, "fragile")) == ids
        assert peek_all(ops, dlq) == []
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        ops.close()
