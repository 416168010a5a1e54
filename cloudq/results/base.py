"""Result records and the backend contract every result store implements."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloudq.states import READY_STATES, State, normalize
from cloudq.stores.chords import ChordStore

__all__ = [
    "READY_STATES",
    "ChordStore",
    "ErrorInfo",
    "ResultBackend",
    "State",
    "TaskResult",
    "poll_until_ready",
]


class ErrorInfo(BaseModel):
    """A task's exception as data: it crosses processes and clouds, the object does not."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    type: str
    """Qualified class name, e.g. ``builtins.ValueError``."""
    message: str
    traceback: str = ""


EXTENDED_ARGS_BYTES = 8192
"""The most JSON of a task's arguments ``result_extended`` keeps in its record: every store
keeps a record this size (Azure Tables' property limit is 64 KiB), and a record is for reading
a task's fate, not its payload."""


class TaskResult(BaseModel):
    """What the backend stores for one task id."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    task_id: str
    state: State | str
    """A built-in ``State``, or a task's own (``update_state(state="PROGRESS")``)."""
    task: str | None = None
    result: Any = None
    error: ErrorInfo | None = None
    attempt: int = 1
    date_done: datetime | None = None
    children: list[str] = Field(default_factory=list)
    """Ids of the tasks this one sent while it ran (``AsyncResult.children``)."""
    parent_id: str | None = None
    """The task that sent this one (a chain's previous step, or a task that called ``delay``)."""
    root_id: str | None = None
    group_id: str | None = None
    chord_id: str | None = None
    chord_index: int | None = None
    """Its place in its chord's header (from 0): the body gets the results in this order."""
    chain_next: list[str] = Field(default_factory=list)
    """Ids of the chain steps after this one, in order, as compiled at send time (up to a step
    that is a group, whose hop is the last id listed)."""
    args: list[Any] | None = None
    """With ``result_extended``: the task's positional arguments (None: not kept)."""
    kwargs: dict[str, Any] | None = None
    queue: str | None = None
    """With ``result_extended``: the queue it was delivered from."""
    args_omitted: str | None = None
    """With ``result_extended``: why the arguments are not kept (over the size limit)."""
    seal: str | None = None
    """With ``signing_keys``: the seal over a SUCCESS record's result (``cloudq.storeseal``),
    checked before links are sent again from it (``cloudq.idempotency``)."""

    @field_validator("state", mode="before")
    @classmethod
    def _known_state(cls, value: Any) -> State | str:
        return normalize(value)

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES


@runtime_checkable
class ResultBackend(Protocol):
    """Where results live. ``expires_seconds`` is the record's time to live."""

    def store(self, result: TaskResult, expires_seconds: float | None) -> None:
        """Write (or overwrite) the record for ``result.task_id``."""
        ...

    def get(self, task_id: str) -> TaskResult | None:
        """The record, or None if there is none (pending, expired or forgotten)."""
        ...

    def wait(self, task_id: str, timeout: float | None) -> TaskResult | None:
        """Block until the record is ready or ``timeout`` passes; return the latest record."""
        ...

    def forget(self, task_id: str) -> None:
        """Delete the record."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def poll_until_ready(
    backend: ResultBackend, task_id: str, timeout: float | None, interval: float = 0.05
) -> TaskResult | None:
    """``wait`` for stores without notifications: poll with backoff up to half a second."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        record = backend.get(task_id)
        if record is not None and record.ready:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            return record
        pause = (
            interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic()))
        )
        time.sleep(pause)
        interval = min(interval * 1.5, 0.5)
