"""The dashboard's event follower: events are untrusted (any producer or worker wrote them), so
a bad one is skipped and never stops the others; the chart counts the last hour by minute."""

from __future__ import annotations

import json
import time

from cloudq import App
from cloudq.dashboard.observer import HISTORY_SECONDS, Buckets, Observer


def test_bad_events_are_skipped_and_good_ones_counted() -> None:
    app = App("obs", broker="memory://obs", backend="memory://obs")
    observer = Observer(app)
    now = time.time()
    good = {"type": "task-succeeded", "uuid": "t1", "name": "a", "timestamp": now, "runtime": 0.1}
    for line in (
        "not json",
        "[1, 2]",
        json.dumps({"type": "task-succeeded", "uuid": "t2", "timestamp": "soon"}),
        json.dumps({"type": "task-failed", "uuid": ["not", "a", "string"], "timestamp": now}),
        json.dumps({"type": "task-failed", "uuid": "t3", "timestamp": 1e300}),
        json.dumps(good),
        json.dumps({"type": "task-failed", "uuid": "t4", "name": "b", "timestamp": now}),
    ):
        observer.apply_line(line)
    series = observer.buckets.series()
    assert sum(series["succeeded"]) == 1 and sum(series["failed"]) == 1
    assert observer.task("t1") is not None and observer.task("t1")["state"] == "SUCCESS"  # type: ignore[index]
    assert observer.task("t4")["state"] == "FAILURE"  # type: ignore[index]
    app.close()


def test_buckets_keep_the_last_hour_only() -> None:
    clock = [10_000_000.0]
    buckets = Buckets(lambda: clock[0])
    buckets.add(clock[0] - HISTORY_SECONDS - 1, succeeded=5)  # too old: dropped
    buckets.add(clock[0] - 120, succeeded=2)
    buckets.add(clock[0], failed=1)
    series = buckets.series()
    assert len(series["t"]) == HISTORY_SECONDS // 60
    assert (sum(series["succeeded"]), sum(series["failed"])) == (2, 1)
    clock[0] += HISTORY_SECONDS
    assert sum(buckets.series()["succeeded"]) == 0
