"""Every error cloudq raises, in one place so callers can catch them by family."""

from __future__ import annotations

from datetime import datetime
from typing import Any


class CloudqError(Exception):
    """Base class of every error raised by cloudq itself."""


class ConfigurationError(CloudqError):
    """The app, a broker URL or a setting is wrong; raised before anything is sent."""


class MalformedEvent(ConfigurationError):
    """A serverless handler got an event that is not its platform's or not in its shape: the
    function's trigger is wrong, or it was invoked by hand. Raised before the event's records
    run (the platform redelivers it, then its dead-letter policy takes it)."""


class ForeignQueue(ConfigurationError):
    """A serverless record comes from a queue (topic) that is not one of this app's broker's:
    another app's trigger points at this function. The record is not run."""


class AdapterNotFound(ConfigurationError):
    """No installed adapter handles a URL scheme; the message names the extra to install."""


class TaskArgumentError(CloudqError, TypeError):
    """Arguments given to ``delay()`` do not fit the task; raised before anything is sent."""


class MessageTooLarge(CloudqError):
    """An encoded task exceeds the broker's message limit and no claim-check store is set."""


class ClaimCheckMissing(CloudqError, KeyError):
    """A parked body is gone (deleted after an earlier delivery, or by a lifecycle rule)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ClaimCheckRefused(CloudqError):
    """A claim-check pointer names an object outside the store (forged, or another store's)."""


class EnvelopeError(CloudqError):
    """Bytes taken off a queue are not a valid cloudq envelope (malformed or wrong version)."""


class SignatureError(EnvelopeError):
    """An envelope is unsigned where signing is required, or its signature does not match."""


class UnknownTask(CloudqError):
    """A message names a task this app does not have."""


class NotRegistered(UnknownTask, KeyError):
    """``app.tasks[name]`` lookup failed."""


class BrokerError(CloudqError):
    """The broker failed an operation; the message says which and why."""


class TimeLimitExceeded(CloudqError):
    """The task ran past its hard time limit and was stopped."""


class SoftTimeLimitExceeded(CloudqError):
    """Raised inside a task at its soft time limit so it can clean up before the hard one."""


class TaskRevokedError(CloudqError):
    """The task was revoked (``revoke()``) or expired: it did not run, or was stopped running."""


class WorkerLostError(CloudqError):
    """The process running a task died before reporting an outcome."""


class TaskPredicate(CloudqError):
    """Raised by a task to tell the worker what to do with its message (not a failure)."""


class Retry(TaskPredicate):
    """Raised by ``self.retry()``: ends this attempt and schedules the next one.

    ``countdown`` or ``eta`` say when; ``args``/``kwargs`` (already JSON) replace the arguments
    of the next attempt when given.
    """

    def __init__(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        *,
        eta: datetime | None = None,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.exc = exc
        self.countdown = countdown
        self.eta = eta
        self.max_retries = max_retries
        """Overrides the task's retry limit for this decision; None keeps it."""
        self.args_override = args
        self.kwargs_override = kwargs
        super().__init__(f"retry requested: {exc!r}" if exc else "retry requested")

    @property
    def when(self) -> float | datetime | None:
        """Celery's name: the eta or the countdown."""
        return self.eta if self.eta is not None else self.countdown


class Ignore(TaskPredicate):
    """Celery's predicate: acknowledge the message, leave the result record as it is."""


class Reject(TaskPredicate):
    """Celery's predicate: refuse the message (``requeue=True``: back to the queue, a bounded
    number of times; otherwise dead-lettered with ``reason`` and a FAILURE record)."""

    def __init__(self, reason: object = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)

    def __str__(self) -> str:
        return f"rejected: {self.reason!s}" if self.reason is not None else "rejected"


class MaxRetriesExceededError(CloudqError):
    """``self.retry()`` was called on the last permitted attempt."""


class ChordError(CloudqError):
    """A chord's header failed, so its body cannot run."""


class TaskFailed(CloudqError):
    """A task failed remotely with an exception that is not re-creatable here."""

    def __init__(self, exc_type: str, message: str) -> None:
        self.exc_type = exc_type
        self.message = message
        super().__init__(f"{exc_type}: {message}")


class RemoteTraceback(Exception):
    """Carries the worker-side traceback text as ``__cause__`` of a re-raised task error."""

    def __init__(self, tb: str) -> None:
        self.tb = tb
        super().__init__(tb)

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'
