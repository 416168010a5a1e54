"""Serverless metric lines and the label rules shared with the Prometheus exporter."""

from __future__ import annotations

import io
import json
import uuid

from cloudq import App
from cloudq.contrib import task_metrics as tm
from cloudq.contrib.serverless_metrics import ServerlessMetrics
from cloudq.testing import process_one


def test_functions_platforms_get_one_structured_line_per_batch() -> None:
    app = App("fn", broker=f"memory://{uuid.uuid4().hex}")
    out = io.StringIO()
    app.add_middleware(ServerlessMetrics(stream=out))

    @app.task(name="ok")
    def ok() -> None: ...

    for _ in range(2):
        ok.delay()
    while process_one(app) is not None:
        pass
    app.hooks.emit("invocation_end", platform="azure-functions")
    app.hooks.emit("invocation_end", platform="azure-functions")  # nothing ran: no line
    [line] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert line["severity"] == "INFO" and line["message"] == "cloudq metrics"
    [group] = line["cloudq_metrics"]
    assert (group["task"], group["queue"], group["tasks"]) == ("ok", "default", {"success": 2})
    assert group["task_duration_seconds"]["count"] == 2


def test_label_values_from_messages_are_bounded() -> None:
    labels = tm.QueueLabels(limit=2)
    assert [labels(q) for q in ("a", "b", "c", "a")] == ["a", "b", tm.OTHER, "a"]
    app = App("labels", broker="memory://labels")
    assert tm.task_label(app, "no.such.task") == tm.UNKNOWN_TASK
