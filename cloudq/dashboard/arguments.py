"""A task's arguments as a page shows them: redacted unless the task opts in.

The rule is the error reports' (``cloudq.reports.arguments_shown``: ``report_args=True``), so
arguments that may hold personal data are never on a page by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudq.reports import REDACTED, arguments_shown

if TYPE_CHECKING:
    from cloudq.app import App

ARGS_CHARS = 500
"""Arguments are shown as a repr cut to this length: a page, not a data dump."""


def arguments_text(app: App, task: str | None, args: Any, kwargs: Any) -> str:
    """``args=... kwargs=...`` (a message's text: the templates escape it), or ``REDACTED``."""
    if not arguments_shown(app, task):
        return REDACTED
    return clipped(args, kwargs)


def clipped(args: Any, kwargs: Any) -> str:
    """``args=... kwargs=...`` cut to ``ARGS_CHARS``."""
    text = f"args={args!r} kwargs={kwargs!r}"
    return text if len(text) <= ARGS_CHARS else text[: ARGS_CHARS - 3] + "..."
