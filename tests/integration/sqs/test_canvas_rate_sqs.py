"""Canvas and rate limits on a real broker (moto SQS) with real Redis."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from cloudq import App, chain, chord, group
from cloudq.testing import start_worker, wait_for

pytestmark = pytest.mark.integration


def make_app(redis_url: str, prefix: str) -> App:
    app = App(
        "c",
        broker=f"sqs://?prefix={prefix}",
        backend=f"{redis_url}?prefix={prefix}",
        queue_lease_seconds=10,
    )

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    return app


def test_chain_group_and_chord_on_sqs(sqs_env: str, redis_url: str) -> None:
    prefix = f"cv{uuid.uuid4().hex[:8]}-"
    app = make_app(redis_url, prefix)
    add, tsum = app.tasks["add"], app.tasks["tsum"]
    with start_worker(app, ["default"], concurrency=4, poll_seconds=1):
        assert chain(add.s(1, 2), add.s(10), add.s(100)).delay().get(timeout=30) == 113
        assert group(add.s(i, i) for i in range(12)).delay().get(timeout=30) == [
            2 * i for i in range(12)
        ]
        result = chord(add.s(i, 1) for i in range(15))(tsum.s())
        assert result.get(timeout=30) == sum(i + 1 for i in range(15))


def test_rate_limit_holds_across_two_workers_on_sqs(sqs_env: str, redis_url: str) -> None:
    prefix = f"rl{uuid.uuid4().hex[:8]}-"
    starts: list[float] = []
    lock = threading.Lock()
    apps = []
    for _ in range(2):
        app = App("r", broker=f"sqs://?prefix={prefix}", backend=f"{redis_url}?prefix={prefix}")

        @app.task(name="limited", rate_limit="10/s", ignore_result=True)
        def limited(i: int) -> None:
            with lock:
                starts.append(time.monotonic())

        apps.append(app)
    apps[0].ensure_queue("default")
    for i in range(30):
        apps[0].tasks["limited"].delay(i)
    with (
        start_worker(apps[0], ["default"], poll_seconds=1),
        start_worker(apps[1], ["default"], poll_seconds=1),
    ):
        wait_for(lambda: len(starts) >= 30, timeout=40, message="30 tasks ran")
    starts.sort()
    assert len(starts) == 30
    # 30 slots 0.1 s apart: the last no earlier than 2.9 s after the first.
    assert starts[-1] - starts[0] >= 2.9 - 0.05
    assert apps[0].broker.stats("default").dead_lettered == 0


def test_two_beats_send_each_tick_once_to_sqs(sqs_env: str, redis_url: str) -> None:
    import json

    from cloudq.beat import Beat

    prefix = f"bt{uuid.uuid4().hex[:8]}-"
    apps = []
    for _ in range(2):
        app = make_app(redis_url, prefix)
        app.conf.beat_schedule = {"tick": {"task": "add", "schedule": 0.5, "args": (1, 1)}}
        apps.append(app)
    apps[0].ensure_queue("default")
    beats = [Beat(a, max_sleep=0.05) for a in apps]
    threads = [threading.Thread(target=b.run, daemon=True) for b in beats]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(b.sent for b in beats) >= 3, timeout=15, message="3 ticks")
    finally:
        for b in beats:
            b.stop()
        for t in threads:
            t.join(timeout=5)
    sent = sum(b.sent for b in beats)
    got = []
    wait_for(
        lambda: got.extend(apps[0].broker.receive("default", 10, 1, 30)) or len(got) >= sent,
        timeout=10,
        interval=0,
        message="ticks on the queue",
    )
    ticks = [json.loads(d.body)["headers"]["cloudq-beat-tick"] for d in got]
    assert len(ticks) == sent and len(set(ticks)) == sent
