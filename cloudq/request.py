"""The context of the running task (``self.request`` in a bound task)."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudq.envelope import Envelope


class Request:
    """What a task knows about its own invocation: a read-only view of its envelope.

    A view, not a copy: one is made for every task a worker runs, and most tasks never read it
    (copying the envelope's thirteen fields into a frozen dataclass cost 2 µs per task).
    """

    __slots__ = ("_delivery_count", "_envelope", "_task")

    def __init__(
        self,
        envelope: Envelope | None = None,
        *,
        task: str | None = None,
        delivery_count: int = 1,
    ) -> None:
        self._envelope = envelope
        self._task = task
        self._delivery_count = delivery_count

    def __repr__(self) -> str:
        return f"<Request {self.task}[{self.id}] attempt {self.attempt}>"

    @property
    def called_directly(self) -> bool:
        """True when the function was called in-process, not run from a message."""
        return self._envelope is None

    @property
    def id(self) -> str | None:
        return self._envelope.id if self._envelope is not None else None

    @property
    def task(self) -> str | None:
        return self._envelope.task if self._envelope is not None else self._task

    @property
    def attempt(self) -> int:
        return self._envelope.attempt if self._envelope is not None else 1

    @property
    def retries(self) -> int:
        """Celery's name: retries so far (the attempt number minus one)."""
        return self.attempt - 1

    @property
    def eta(self) -> datetime | None:
        return self._envelope.eta if self._envelope is not None else None

    @property
    def queue(self) -> str | None:
        return self._envelope.queue if self._envelope is not None else None

    @property
    def root_id(self) -> str | None:
        """The id of the first task of the workflow this one belongs to (its own if none)."""
        env = self._envelope
        return (env.root_id or env.id) if env is not None else None

    @property
    def parent_id(self) -> str | None:
        return self._envelope.parent_id if self._envelope is not None else None

    @property
    def group_id(self) -> str | None:
        return self._envelope.group_id if self._envelope is not None else None

    @property
    def headers(self) -> dict[str, str]:
        return self._envelope.headers if self._envelope is not None else {}

    @property
    def args(self) -> list[Any]:
        """The arguments as they travelled (JSON), before loading into the declared types."""
        return self._envelope.args if self._envelope is not None else []

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._envelope.kwargs if self._envelope is not None else {}

    @property
    def delivery_count(self) -> int:
        """How many times the broker handed this message out (above 1 after a crash)."""
        return self._delivery_count


current_request: ContextVar[Request | None] = ContextVar("cloudq_request", default=None)
