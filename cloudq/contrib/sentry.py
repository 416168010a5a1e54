"""Final task failures to Sentry: a middleware on the hook bus.

``app.add_middleware(SentryReports())`` after ``sentry_sdk.init(...)`` in the app's module (so
the processes pool's children, which import it, report too). A failure is reported once, when
it is final (retries spent, or an error the task does not retry), never on each retry; with
the task, id, attempt and queue as tags and the ``cloudq`` context. The arguments are redacted
unless the task opts in with ``report_args=True`` (``cloudq.reports.shown_arguments``, the rule
the error e-mails follow), and so are the stack frames' local variables, where a task's
arguments live too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudq.distribution import require_extra
from cloudq.middleware import Middleware
from cloudq.reports import REDACTED, shown_arguments
from cloudq.states import State

if TYPE_CHECKING:
    from cloudq.app import App


def _require() -> Any:
    return require_extra("sentry_sdk", "sentry", "Sentry reports")


def _without_frame_variables(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    for exception in (event.get("exception") or {}).get("values") or []:
        for frame in (exception.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    return event


class SentryReports(Middleware):
    """Reports each final failure's exception, with the task's tags and context."""

    def __init__(self) -> None:
        self._sdk = _require()

    def after_execute(self, app: App, **kwargs: Any) -> None:
        exception = kwargs["exception"]
        if kwargs["state"] != State.FAILURE or exception is None:
            return
        envelope = kwargs["envelope"]
        args, kw = shown_arguments(app, envelope)
        with self._sdk.new_scope() as scope:
            scope.set_tag("cloudq.task", envelope.task)
            scope.set_tag("cloudq.task_id", envelope.id)
            scope.set_tag("cloudq.attempt", str(envelope.attempt))
            scope.set_tag("cloudq.queue", envelope.queue)
            scope.set_context(
                "cloudq",
                {
                    "task": envelope.task,
                    "id": envelope.id,
                    "attempt": envelope.attempt,
                    "queue": envelope.queue,
                    "root_id": envelope.root_id or envelope.id,
                    "args": args,
                    "kwargs": kw,
                },
            )
            if args is REDACTED:
                scope.add_event_processor(_without_frame_variables)
            scope.capture_exception(exception)
