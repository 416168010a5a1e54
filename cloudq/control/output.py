"""Output for people and for scripts: aligned tables, JSON, progress bars only on a terminal.

No dependency beyond click: a progress bar is click's, drawn on stderr and only when stderr is a
terminal, so piped output stays plain (one summary line at the end, printed by the command).

Most of what the commands print came from messages (task names, ids, errors, tracebacks, dead
letter reasons, worker records), so it is the sender's text: a control character in it could
retitle, clear or rewrite the operator's terminal. Human-readable output goes through ``shown``
(one line), ``shown_lines`` (a traceback) or ``table``, which write control characters as
visible escapes whether or not stdout is a terminal (a pipe may end in ``less -R`` or a log
viewer). JSON goes through ``json_text``, whose ASCII-only encoding escapes every control
character inside its strings, so it stays valid JSON and decodes to the sender's exact text.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from cloudq.logsafe import printable


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as JSON with only printable ASCII in it: ``ensure_ascii`` writes every control
    character (C0, DEL, C1) and every non-ASCII one as a ``\\u`` escape."""
    return json.dumps(value, indent=indent, default=str, sort_keys=True, ensure_ascii=True)


def echo_json(value: Any) -> None:
    click.echo(json_text(value, indent=2))


def shown(value: Any) -> str:
    """``value`` as one line of text, its control characters (newlines too) escaped."""
    return printable(str(value))


def shown_lines(text: str) -> str:
    """A multi-line text such as a traceback, kept as lines: only ``\\n`` breaks a line, each line
    is escaped as by ``shown`` (a ``\\r`` could overwrite a printed line, so it is escaped too)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return shown(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, numbers right-aligned, ``-`` for unknown values."""
    text = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in text)])


def ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "-"
    seconds = max(0.0, (now or time.time()) - timestamp)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress(length: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """``update(n)`` advances a bar on stderr when it is a terminal; otherwise does nothing."""
    if not on_terminal():
        yield lambda n: None
        return
    with click.progressbar(length=length or 0, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update
