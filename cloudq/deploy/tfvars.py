"""``cloudq terraform export``: the app's queues and their settings as Terraform variables.

The code decides which queues exist (task options, routes, the default queue) and how long a
lease is; Terraform creates them. Exporting those facts into a ``.tfvars.json`` keeps one source
of truth, and the check mode fails a build when the file and the code have drifted apart.

Keys match the inputs of the ``terraform/`` modules' example roots: ``app`` (CLOUDQ_APP),
``queue_prefix``, ``queues`` (per queue: visibility, max receives, delay, FIFO) and
``function_timeout_seconds`` (a Lambda timeout that lets the longest task reach its time limit).
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from cloudq import priority, routes
from cloudq.adapters.wire import is_fifo
from cloudq.logsafe import get_logger

if TYPE_CHECKING:
    from cloudq.app import App

__all__ = ["app_queues", "export_tfvars", "render_tfvars", "tfvars_drift"]

logger = get_logger("cloudq.deploy.tfvars")

LAMBDA_MAX_TIMEOUT_SECONDS = 900
HANDLER_MARGIN_SECONDS = 2
"""The Lambda handler keeps 1 s back per task and starts none with under 2 s left."""


def app_queues(app: App) -> list[str]:
    """Every queue the app sends to (``routes.app_queues``), sorted for a stable file."""
    return sorted(priority.expand(app, routes.app_queues(app)))


def longest_time_limit(app: App) -> float:
    limits = [task.options.time_limit or app.conf.task_time_limit for task in app.tasks.values()]
    return max(limits, default=app.conf.task_time_limit)


def queue_prefix(broker_url: str) -> str:
    """The broker URL's ``prefix`` option, else ``CLOUDQ_<SCHEME>_PREFIX`` as adapters read it."""
    parts = urlsplit(broker_url)
    prefix = parse_qs(parts.query).get("prefix")
    if prefix:
        return prefix[-1]
    return os.environ.get(f"CLOUDQ_{parts.scheme.upper()}_PREFIX", "")


def export_tfvars(app: App, app_ref: str) -> dict[str, Any]:
    """The variables as a JSON-ready dict (sorted when rendered)."""
    conf = app.conf
    needed = math.ceil(longest_time_limit(app)) + HANDLER_MARGIN_SECONDS
    if needed > LAMBDA_MAX_TIMEOUT_SECONDS:
        logger.warning(
            "the longest task time limit (%ss) does not fit Lambda's %ss: on Lambda such tasks "
            "are stopped at the function's timeout",
            needed - HANDLER_MARGIN_SECONDS,
            LAMBDA_MAX_TIMEOUT_SECONDS,
        )
    queues = {
        name: {
            "visibility_timeout_seconds": math.ceil(conf.queue_lease_seconds),
            "max_receive_count": conf.queue_max_receive_count,
            # cloudq delays each message itself; a queue-wide delay would add to every one.
            "delay_seconds": 0,
            "fifo": is_fifo(name),
        }
        for name in app_queues(app)
    }
    return {
        "app": app_ref,
        "queue_prefix": queue_prefix(conf.broker_url),
        "queues": queues,
        "function_timeout_seconds": min(needed, LAMBDA_MAX_TIMEOUT_SECONDS),
    }


def render_tfvars(data: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, final newline (diffs stay readable)."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def tfvars_drift(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Differences between the app's variables and a file's, one line each, by dotted path."""
    where = path or "the file"
    if isinstance(expected, dict) and isinstance(actual, dict):
        lines: list[str] = []
        for key in sorted(set(expected) | set(actual), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                lines.append(f"{sub}: in the app, not in the file")
            elif key not in expected:
                lines.append(f"{sub}: in the file, not in the app")
            else:
                lines.extend(tfvars_drift(expected[key], actual[key], sub))
        return lines
    if expected != actual or type(expected) is not type(actual):
        return [f"{where}: the file has {json.dumps(actual)}, the app {json.dumps(expected)}"]
    return []
