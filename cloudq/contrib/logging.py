"""JSON logs and the running task's context on log records.

``TaskContextFilter`` sets ``task_id``, ``task``, ``attempt``, ``root_id`` and ``queue`` (and,
with OpenTelemetry importable and a span recording, ``trace_id`` and ``span_id``) on every
record logged while a task runs in that thread: add it to your own handlers, and name the
fields in a format (``%(task_id)s``; pass ``default="-"`` for lines outside tasks). Those values
come from the message: by default the filter escapes their control characters as
``cloudq.logsafe`` does, so a text log stays one line per record.

``use_json_logs()`` (``cloudq worker --log-format json``, or the ``log_format`` setting) puts
python-json-logger's formatter and the filter on the root logger's handlers: one JSON object a
line, where JSON's own escaping keeps each value in its field. The worker's processes-pool
children do the same when they start (a middleware passed to them on the hook bus).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cloudq.distribution import require_extra
from cloudq.logsafe import printable
from cloudq.middleware import Middleware, pass_to_pool_children
from cloudq.request import current_request

if TYPE_CHECKING:
    from cloudq.app import App

JSON_FIELDS = "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s"
CONTEXT_FIELDS = ("task_id", "task", "attempt", "root_id", "queue")
TRACE_FIELDS = ("trace_id", "span_id")


def _otel_trace() -> Any:
    """``opentelemetry.trace`` if it is importable (the API only, never the SDK), else None."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


class TaskContextFilter(logging.Filter):
    """Adds the running task's ids to each record (see the module's docstring)."""

    def __init__(self, default: Any = None, *, escape: bool = True) -> None:
        super().__init__()
        self.default = default
        self.escape = escape
        self._trace = _otel_trace()

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request.get()
        if request is None or request.id is None:
            if self.default is not None:
                for name in CONTEXT_FIELDS:
                    setattr(record, name, self.default)
            return True
        text = printable if self.escape else str
        record.task_id = text(request.id)
        record.task = text(request.task or "")
        record.attempt = request.attempt
        record.root_id = text(request.root_id or "")
        record.queue = text(request.queue or "")
        if self._trace is not None:
            context = self._trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
                record.span_id = format(context.span_id, "016x")
        return True


def json_formatter() -> logging.Formatter:
    """python-json-logger's formatter with cloudq's fields."""
    json_logger = require_extra("pythonjsonlogger.json", "jsonlogs", "JSON logs")
    formatter: logging.Formatter = json_logger.JsonFormatter(
        JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level"}
    )
    return formatter


def use_json_logs(app: App | None = None) -> None:
    """JSON on every handler of the root logger, with the task context; given the worker's
    ``app``, its processes-pool children do the same."""
    formatter = json_formatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, TaskContextFilter) for f in handler.filters):
            handler.addFilter(TaskContextFilter(escape=False))
    if app is not None:
        pass_to_pool_children(f"{__name__}:{JsonLogs.__name__}")


class JsonLogs(Middleware):
    """A pool child's logs as JSON, from its ``process_start``."""

    def process_start(self, app: App, **kwargs: Any) -> None:
        use_json_logs()
