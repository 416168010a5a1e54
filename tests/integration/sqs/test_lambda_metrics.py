"""The Lambda handler's metrics: one CloudWatch EMF line per batch and task, on moto SQS."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from cloudq import App
from cloudq.contrib.serverless_metrics import ServerlessMetrics
from cloudq.testing import wait_for
from cloudq_sqs.lambda_handler import lambda_handler
from cloudq_sqs.lambda_local import LocalEventSource

pytestmark = pytest.mark.integration


def test_one_emf_line_per_batch_and_task(sqs_env: str) -> None:
    name = uuid.uuid4().hex[:10]
    app = App("lambda", broker=f"sqs://?prefix=m{name}-", backend=f"memory://{name}")
    out = io.StringIO()
    app.add_middleware(ServerlessMetrics(stream=out))

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x * 2

    @app.task(name="fails")
    def fails() -> None:
        raise ValueError("poison")

    app.ensure_queue("default")
    results = [app.tasks["ok"].delay(1), app.tasks["ok"].delay(2), app.tasks["fails"].delay()]
    source = LocalEventSource(app, lambda_handler(app), ["default"], timeout_seconds=30)
    wait_for(
        lambda: (
            source.poll_once("default", wait_seconds=1) >= 0 and all(r.ready() for r in results)
        ),
        timeout=20,
        interval=0,
        message="the batch run",
    )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    by_task: dict[str, dict[str, object]] = {}
    for line in lines:
        directive = line["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "cloudq" and directive["Dimensions"] == [["task", "queue"]]
        for metric in directive["Metrics"]:
            assert metric["Name"] in line, "every metric named has its value in the line"
        task = str(line["task"])
        by_task.setdefault(task, {"tasks_success": 0, "tasks_failure": 0, "durations": 0})
        counts = by_task[task]
        counts["tasks_success"] = int(counts["tasks_success"]) + line.get("tasks_success", 0)
        counts["tasks_failure"] = int(counts["tasks_failure"]) + line.get("tasks_failure", 0)
        counts["durations"] = int(counts["durations"]) + len(line["task_duration_seconds"])
    assert by_task == {
        "ok": {"tasks_success": 2, "tasks_failure": 0, "durations": 2},
        "fails": {"tasks_success": 0, "tasks_failure": 1, "durations": 1},
    }
    assert len(lines) <= 2 * source.stats.invocations, "one line per batch and task"
