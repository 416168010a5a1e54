"""What the three serverless handlers share: the broker they need, and one record kept apart.

A handler runs a batch of records in one invocation and reports each one's outcome the way its
platform expects. A ``BaseException`` that is not an ``Exception`` (``SystemExit``,
``KeyboardInterrupt``, a custom subclass) raised while one record runs would end the invocation
with no outcome reported for any: Lambda would redeliver the records that had succeeded, the
Functions host would abandon the whole batch. ``contained`` turns it into ``RecordInterrupted``,
an ordinary error the handler reports for that record alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from cloudq.errors import CloudqError, ConfigurationError

if TYPE_CHECKING:
    from cloudq.app import App

T = TypeVar("T")
_started: weakref.WeakSet[App] = weakref.WeakSet()
"""Apps whose container has emitted ``process_start``."""
B = TypeVar("B")


class NamedQueues(Protocol):
    """A broker that maps cloudq queue names to its provider's names under a prefix."""

    prefix: str

    def logical_name(self, physical: str) -> str: ...

    def physical_name(self, queue: str) -> str: ...


def own_queue(broker: NamedQueues, name: str) -> str | None:
    """The cloudq queue whose provider name is ``name``, or None if the broker would never
    give that name (outside its prefix, or not a name it makes): that record is not ours."""
    if not name.startswith(broker.prefix):
        return None
    queue = broker.logical_name(name)
    try:
        return queue if broker.physical_name(queue) == name else None
    except ConfigurationError:
        return None


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


def begin_invocation(app: App, platform: str, context: object = None, records: int = 0) -> None:
    """What every handler does before its batch runs; never raises.

    On a container's first invocation, emits the ``process_start`` hook (Celery's
    ``worker_process_init``: open pools there). Writes the container's heartbeat (at most once
    per interval, so ``cloudq status`` lists warm containers) and reloads the revoked task ids,
    so a task revoked since the last invocation is acknowledged unrun here as by a worker.
    """
    from cloudq import revoke
    from cloudq.control.heartbeat import serverless_heartbeat

    if app not in _started:  # a cold start: this container's process now runs tasks
        _started.add(app)
        app.hooks.emit("process_start")
    serverless_heartbeat(app, platform, context, records)
    revoke.refresh(app)


def end_invocation(app: App, platform: str) -> None:
    """What every handler does once its batch is done, however it ended: the
    ``invocation_end`` hook (serverless metrics are written once per batch)."""
    app.hooks.emit("invocation_end", platform=platform)
