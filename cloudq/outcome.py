"""What ``execute()`` decided about one delivery; worker loops and handlers apply it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cloudq.envelope import Envelope
from cloudq.results.base import TaskResult


@dataclass(frozen=True)
class Ack:
    """Done: record ``result`` (if any), send ``follow_ups``, then acknowledge.

    ``envelope`` and ``value`` (the JSON result) are set when the task has chain links or is a
    chord header: settling sends the next task, or counts the chord part.
    """

    result: TaskResult | None = None
    follow_ups: tuple[Envelope, ...] = field(default=())
    envelope: Envelope | None = None
    value: Any = None


@dataclass(frozen=True)
class RetryAt:
    """Failed, try again: send ``envelope`` (attempt + 1) to run at ``when``, then acknowledge."""

    envelope: Envelope
    when: datetime
    result: TaskResult | None = None


@dataclass(frozen=True)
class DeadLetter:
    """Give up: move the message to the dead-letter queue with ``reason``; never run it again.

    ``envelope`` is the decoded envelope with the error in its headers, or None when the bytes
    could not be decoded (then the original bytes are dead-lettered as they are).
    """

    reason: str
    envelope: Envelope | None = None
    result: TaskResult | None = None


@dataclass(frozen=True)
class Defer:
    """Not yet (eta in the future, or over a rate limit): run ``envelope`` unchanged at ``until``.

    A deferral is not an attempt: the attempt count stays as it is.
    """

    envelope: Envelope
    until: datetime


Outcome = Ack | RetryAt | DeadLetter | Defer
