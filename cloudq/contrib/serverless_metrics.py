"""The worker's task metrics from a serverless handler, as log lines: a middleware on the bus.

A function has no port to scrape: ``app.add_middleware(ServerlessMetrics())`` writes, once per
batch (the ``invocation_end`` hook), what the batch's tasks did, under the names
``cloudq.contrib.task_metrics`` gives the Prometheus exporter:

- Lambda: CloudWatch embedded metric format (EMF), the JSON that Powertools' ``log_metrics``
  prints (``_aws.CloudWatchMetrics``): CloudWatch makes metrics of it with no API call. EMF
  takes one value per dimension in a line, so a batch writes one line per (task, queue).
- Cloud Functions and Azure Functions: one structured JSON line (``severity``, ``message``,
  ``cloudq_metrics``) for log-based metrics or a Log Analytics query.

Lines go to stdout, which each platform collects as the function's log.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from cloudq.contrib import task_metrics as tm
from cloudq.middleware import Middleware

if TYPE_CHECKING:
    from cloudq.app import App

LAMBDA = "lambda"
EMF_MAX_VALUES = 100
"""CloudWatch takes at most 100 values per metric in one EMF line."""


@dataclass
class _Group:
    """What one (task, queue)'s tasks did in this batch."""

    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    durations: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


class ServerlessMetrics(Middleware):
    """Collects a batch's task metrics and writes them when the batch is done."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._runs = tm.Runs()
        self._queues = tm.QueueLabels()
        self._groups: dict[tuple[str, str], _Group] = {}
        self._lock = threading.Lock()

    def _group(self, app: App, envelope: Any) -> _Group:
        key = (tm.task_label(app, envelope.task), self._queues(envelope.queue))
        with self._lock:
            return self._groups.setdefault(key, _Group())

    def before_execute(self, app: App, **kwargs: Any) -> None:
        envelope = kwargs["envelope"]
        self._group(app, envelope).latencies.append(tm.queue_latency(envelope))
        self._runs.start(kwargs["request"])

    def after_execute(self, app: App, **kwargs: Any) -> None:
        group = self._group(app, kwargs["envelope"])
        group.outcomes[tm.outcome_label(kwargs["state"])] += 1
        took = self._runs.stop(kwargs["request"])
        if took is not None:
            group.durations.append(took)

    def revoked(self, app: App, **kwargs: Any) -> None:
        self._group(app, kwargs["envelope"]).outcomes["revoked"] += 1

    def invocation_end(self, app: App, **kwargs: Any) -> None:
        with self._lock:
            groups, self._groups = self._groups, {}
        if not groups:
            return
        if kwargs["platform"] == LAMBDA:
            lines = [emf_line(task, queue, g) for (task, queue), g in groups.items()]
        else:
            lines = [structured_line(groups)]
        out = self._stream or sys.stdout
        out.write("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
        out.flush()


def _outcome_metric(outcome: str) -> str:
    return f"{tm.TASKS}_{outcome}"


def emf_line(task: str, queue: str, group: _Group) -> dict[str, Any]:
    """One EMF object: counts per outcome, and the durations and latencies as value lists."""
    values: dict[str, Any] = {_outcome_metric(o): n for o, n in group.outcomes.items()}
    metrics = [{"Name": name, "Unit": "Count"} for name in values]
    for name, seen in ((tm.DURATION, group.durations), (tm.QUEUE_LATENCY, group.latencies)):
        if seen:
            values[name] = seen[:EMF_MAX_VALUES]
            metrics.append({"Name": name, "Unit": "Seconds"})
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": tm.NAMESPACE, "Dimensions": [list(tm.LABELS)], "Metrics": metrics}
            ],
        },
        "task": task,
        "queue": queue,
        **values,
    }


def _summary(seen: list[float]) -> dict[str, float]:
    return {"count": len(seen), "sum": sum(seen), "max": max(seen, default=0.0)}


def structured_line(groups: dict[tuple[str, str], _Group]) -> dict[str, Any]:
    """One structured log entry for the batch (Cloud Logging reads ``severity``/``message``)."""
    return {
        "severity": "INFO",
        "message": "cloudq metrics",
        "cloudq_metrics": [
            {
                "task": task,
                "queue": queue,
                tm.TASKS: dict(g.outcomes),
                tm.DURATION: _summary(g.durations),
                tm.QUEUE_LATENCY: _summary(g.latencies),
            }
            for (task, queue), g in groups.items()
        ],
    }
