"""Task states under Celery's names (``from cloudq import states``), in the one place they live.

The built-in states are a ``StrEnum``, so ``record.state == "SUCCESS"`` holds; a task may also
store a state of its own (``self.update_state(state="PROGRESS")``): any other upper-case name.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """The states cloudq itself writes or reports."""

    PENDING = "PENDING"
    RECEIVED = "RECEIVED"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"
    REJECTED = "REJECTED"
    IGNORED = "IGNORED"


PENDING = State.PENDING
RECEIVED = State.RECEIVED
STARTED = State.STARTED
RETRY = State.RETRY
SUCCESS = State.SUCCESS
FAILURE = State.FAILURE
REVOKED = State.REVOKED
REJECTED = State.REJECTED
IGNORED = State.IGNORED

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
"""Final: the task will not change again (``AsyncResult.ready()``)."""
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
"""States whose record holds an error rather than a value."""
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
"""States whose error ``AsyncResult.get()`` re-raises."""
ALL_STATES = frozenset(State)

_PRECEDENCE = [SUCCESS, FAILURE, None, REVOKED, STARTED, RECEIVED, REJECTED, RETRY, PENDING]
"""Celery's order, most final first; a custom state sits where ``None`` is."""


def precedence(state: str) -> int:
    """Celery's rank of a state (lower: more final); custom states rank between FAILURE and
    REVOKED, as in Celery."""
    try:
        return _PRECEDENCE.index(state)  # type: ignore[arg-type]
    except ValueError:
        return _PRECEDENCE.index(None)


def normalize(state: str) -> State | str:
    """A built-in state as its enum member, a custom one as the text it is; refuses what no
    backend can store or compare (empty, not a string)."""
    if not isinstance(state, str) or not state:
        raise ValueError(f"a task state is a non-empty string, not {state!r}")
    try:
        return State(state)
    except ValueError:
        return state


__all__ = [
    "ALL_STATES",
    "EXCEPTION_STATES",
    "FAILURE",
    "IGNORED",
    "PENDING",
    "PROPAGATE_STATES",
    "READY_STATES",
    "RECEIVED",
    "REJECTED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "UNREADY_STATES",
    "State",
    "precedence",
]
