"""The context of the running task (``self.request`` in a bound task)."""

from __future__ import annotations

import os
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudq.envelope import Envelope, RetryPolicy
    from cloudq.errors import Retry

REQUEUE_HEADER = "cloudq-requeues"
"""How many times a task put its message back with ``Reject(requeue=True)`` (``execute``
counts them; a requeued message reports itself as redelivered)."""


class Request:
    """What a task knows about its own invocation: a read-only view of its envelope.

    A view, not a copy: one is made for every task a worker runs, and most tasks never read it
    (copying the envelope's thirteen fields into a frozen dataclass cost 2 µs per task).
    """

    __slots__ = (
        "_args",
        "_delivery_count",
        "_envelope",
        "_kwargs",
        "_task",
        "is_eager",
        "pending_retry",
    )

    def __init__(
        self,
        envelope: Envelope | None = None,
        *,
        task: str | None = None,
        delivery_count: int = 1,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        eager: bool = False,
    ) -> None:
        self._envelope = envelope
        self._task = task
        self._delivery_count = delivery_count
        self._args = args
        self._kwargs = kwargs
        self.is_eager = eager
        """Celery's name: run by ``apply()`` in the caller, not by a worker."""
        self.pending_retry: Retry | None = None
        """Set by ``self.retry(throw=False)``: the attempt is retried when the body returns."""

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
        """The positional arguments as the caller passed them (loaded into their types)."""
        if self._args is not None:
            return self._args
        return self._envelope.args if self._envelope is not None else []

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments as the caller passed them."""
        if self._kwargs is not None:
            return self._kwargs
        return self._envelope.kwargs if self._envelope is not None else {}

    @property
    def retries(self) -> int:
        """Celery's name: retries so far, 0 on the first attempt."""
        return self.attempt - 1

    @property
    def hostname(self) -> str:
        """The node running the task (``pid@host``, the worker's default node name)."""
        return f"{os.getpid()}@{os.uname().nodename}"

    @property
    def delivery_info(self) -> dict[str, Any]:
        """Celery's ``delivery_info``, in the terms a cloud queue has (no exchanges)."""
        env = self._envelope
        return {
            "exchange": "",
            "routing_key": env.queue if env is not None else None,
            "priority": env.priority if env is not None else None,
            "redelivered": self._delivery_count > 1 or REQUEUE_HEADER in self.headers,
        }

    @property
    def expires(self) -> datetime | None:
        return self._envelope.expires if self._envelope is not None else None

    @property
    def retry_policy(self) -> RetryPolicy | None:
        """The retry policy the message carries (None when called directly)."""
        return self._envelope.retry if self._envelope is not None else None

    @property
    def delivery_count(self) -> int:
        """How many times the broker handed this message out (above 1 after a crash)."""
        return self._delivery_count


current_request: ContextVar[Request | None] = ContextVar("cloudq_request", default=None)
