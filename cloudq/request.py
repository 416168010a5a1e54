"""The context of the running task (``self.request`` in a bound task)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Request:
    """What a task knows about its own invocation."""

    id: str | None = None
    task: str | None = None
    attempt: int = 1
    eta: datetime | None = None
    queue: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    delivery_count: int = 1
    """How many times the broker handed this message out (above 1 after a crash)."""
    called_directly: bool = True

    @property
    def retries(self) -> int:
        """Celery's name: retries so far (the attempt number minus one)."""
        return self.attempt - 1


current_request: ContextVar[Request | None] = ContextVar("cloudq_request", default=None)
