"""Text that came from a message, made safe for one log line or a terminal.

A task name, an id or an error message read from a queue is the sender's text: a newline in it
would forge a log line, an escape sequence would rewrite an operator's terminal. Every cloudq
logger (``get_logger``) escapes the control characters of the values it formats, never of its
own format strings, so no call site has to remember which value came from a message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (newline, carriage return, ESC for ANSI and OSC sequences), the Unicode
line and paragraph separators, and the bidirectional overrides that reorder what is shown."""


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def printable(text: str) -> str:
    """``text`` with every control character written as its escape (``\\n``, ``\\x1b``)."""
    if text.isprintable():  # the common case, in C
        return text
    return _UNSAFE.sub(_escape, text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, BaseException):  # formatted through str(), which the sender may shape
        return printable(str(value))
    return value


class EscapeControlCharacters(logging.Filter):
    """Escapes control characters in a record's arguments (its message stays one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_clean(a) for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: _clean(v) for k, v in args.items()}
        return True


_FILTER = EscapeControlCharacters()


def get_logger(name: str) -> logging.Logger:
    """The standard logger ``name``, with control characters in its arguments escaped."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
