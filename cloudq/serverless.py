"""What the three serverless handlers share: the broker they need, and one record kept apart.

A handler runs a batch of records in one invocation and reports each one's outcome the way its
platform expects. A ``BaseException`` that is not an ``Exception`` (``SystemExit``,
``KeyboardInterrupt``, a custom subclass) raised while one record runs would end the invocation
with no outcome reported for any: Lambda would redeliver the records that had succeeded, the
Functions host would abandon the whole batch. ``contained`` turns it into ``RecordInterrupted``,
an ordinary error the handler reports for that record alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from cloudq.errors import CloudqError, ConfigurationError

if TYPE_CHECKING:
    from cloudq.app import App

T = TypeVar("T")
B = TypeVar("B")


class RecordInterrupted(CloudqError):
    """One record's processing raised a ``BaseException``: that record failed, not the batch."""


def contained(run: Callable[[], T]) -> T:
    """``run()``; a ``BaseException`` out of it is re-raised as ``RecordInterrupted``."""
    try:
        return run()
    except Exception:
        raise
    except BaseException as exc:  # a task's SystemExit must not end the invocation
        raise RecordInterrupted(
            f"{type(exc).__name__} raised while processing the record: {exc}"
        ) from exc


def require_broker(app: App, kind: type[B], handler: str, url: str) -> B:
    """The app's broker if it is a ``kind``; ``ConfigurationError`` for every handler else."""
    broker = app.broker
    if not isinstance(broker, kind):
        raise ConfigurationError(
            f"{handler} needs a {url} broker, not {broker!r}: set the app's broker_url "
            f"(CLOUDQ_BROKER_URL) to {url}..."
        )
    return broker
