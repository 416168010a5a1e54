"""What the three serverless handlers share: the batch loop, the broker they need, and one
record kept apart.

A handler translates its platform's event into ``BatchRecord``s, ``run_batch()`` runs them (the
deadline margin, the FIFO stop at the first failure, the heartbeat, hold-or-settle: one rule,
here), and the handler reports each ``RecordResult`` the way its platform expects, as
Powertools' ``BasePartialProcessor`` splits a batch from its reporting.

A ``BaseException`` that is not an ``Exception`` (``SystemExit``,
``KeyboardInterrupt``, a custom subclass) raised while one record runs would end the invocation
with no outcome reported for any: Lambda would redeliver the records that had succeeded, the
Functions host would abandon the whole batch. ``contained`` turns it into ``RecordInterrupted``,
an ordinary error the handler reports for that record alone.

Misuse raises one error type in every handler, by the rules here:

- the app's broker is not the handler's provider's: ``ConfigurationError`` (``require_broker``);
- the event is not the platform's, or not in its shape: ``MalformedEvent``, before its records
  run;
- a record from a queue (topic) that is not this app's broker's: ``ForeignQueue``
  (``foreign_queue``), for that record (Lambda reports it failed, Pub/Sub nacks it);
- a ``time_limit`` / ``timeout_seconds`` that is not a positive number of seconds:
  ``ConfigurationError`` when the handler is made (``check_seconds``);
- a queue the handler is bound to that the broker would never name (the Service Bus trigger's
  ``queue``): ``ConfigurationError`` (``check_queue``), before any record runs;
- a store that lacks what the app's tasks need: ``ConfigurationError`` at the first invocation
  (``cloudq.stores.requirements``).

``MalformedEvent`` and ``ForeignQueue`` subclass ``ConfigurationError``: the trigger is what is
wrong.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

from cloudq.errors import CloudqError, ConfigurationError, ForeignQueue
from cloudq.logsafe import get_logger

if TYPE_CHECKING:
    from cloudq.adapters.base import Delivery
    from cloudq.app import App
    from cloudq.outcome import Outcome

logger = get_logger("cloudq.serverless")

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


def foreign_queue(source: str, broker: NamedQueues, fate: str) -> ForeignQueue:
    """The error for a record from ``source``, not one of ``broker``'s queues; ``fate`` says
    what becomes of it on the handler's platform."""
    return ForeignQueue(
        f"{source!r} is not this app's broker's (prefix {broker.prefix!r}): not run; {fate}"
    )


def check_queue(broker: NamedQueues, queue: object, handler: str) -> str:
    """``queue`` (a handler's binding, without the prefix) if the broker would name it."""
    if not isinstance(queue, str) or not queue.strip():
        raise ConfigurationError(f"{handler} needs the queue its trigger reads, got {queue!r}")
    broker.physical_name(queue)  # ConfigurationError naming the provider's rule
    return queue


def check_seconds(value: object, what: str) -> float | None:
    """``value`` as seconds if it is None or a positive finite number; ``ConfigurationError``
    else (a string from an environment variable, 0, a negative, NaN)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{what} must be a positive number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{what} must be a finite number of seconds, got {value!r}")
    return float(value)


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
    """What every handler does before its batch runs.

    On a container's first invocation, checks that the result backend has what the app's tasks
    need (``cloudq.stores.requirements``: a ``ConfigurationError`` out of the handler, so the
    platform redelivers the batch and no task runs with its feature off; the container stays
    unstarted, so every invocation refuses until it is fixed), then emits the ``process_start``
    hook (Celery's ``worker_process_init``: open pools there). Otherwise never raises. Writes
    the container's heartbeat (at most once per interval, so ``cloudq status`` lists warm
    containers) and reloads the revoked task ids, so a task revoked since the last invocation
    is acknowledged unrun here as by a worker.
    """
    from cloudq import revoke
    from cloudq.control.heartbeat import serverless_heartbeat
    from cloudq.stores.requirements import require, task_needs

    if app not in _started:  # a cold start: this container's process now runs tasks
        require(app, f"the {platform} handler", task_needs(app))
        _started.add(app)
        app.hooks.emit("process_start")
    serverless_heartbeat(app, platform, context, records)
    revoke.refresh(app)


def end_invocation(app: App, platform: str) -> None:
    """What every handler does once its batch is done, however it ended: the
    ``invocation_end`` hook (serverless metrics are written once per batch)."""
    app.hooks.emit("invocation_end", platform=platform)


class Status(StrEnum):
    """What became of one record of a batch."""

    SETTLED = "settled"
    """Its outcome was applied: the platform may acknowledge it."""
    HELD = "held"
    """Deferred and held (``cloudq.settle.holds``): the platform must bring it back later."""
    FAILED = "failed"
    """Decoding, running or settling it raised (``RecordResult.error``)."""
    REFUSED = "refused"
    """Not this app's record (its decoder returned None): not run."""
    NOT_STARTED = "not started"
    """Too little time was left, or an earlier record of its FIFO batch did not settle."""


@dataclass(frozen=True)
class BatchRecord:
    """One record of a platform's event, as its handler translated it."""

    id: str
    """What the platform reports the record by (Lambda's ``messageId``...)."""
    decode: Callable[[], Delivery | None]
    """The Delivery a worker would have got; None if the record is not this app's. Called
    only when the record is started; what it raises fails that record alone."""
    fifo: bool = False
    """Whether nothing after this record may run before it settled (a FIFO queue's batch)."""


@dataclass(frozen=True)
class RecordResult:
    """One record's fate, for its handler to report the platform's way."""

    record: BatchRecord
    status: Status
    delivery: Delivery | None = None
    outcome: Outcome | None = None
    error: Exception | None = None

    @property
    def settled(self) -> bool:
        """Whether the platform may acknowledge it (every other status wants it back)."""
        return self.status is Status.SETTLED


FailureHandler = Callable[[RecordResult], None]
SettleFn = Callable[["App", "Delivery", "Outcome", Callable[["Delivery"], None]], None]
"""``cloudq.settle.settle``'s shape: ``(app, delivery, outcome, ack)``."""


def _time_limit(left: float | None, margin: float, cap: float | None) -> float | None:
    """The hard limit of the next record's task: the time left less ``margin``, and ``cap``."""
    limit = None if left is None else max(0.0, left - margin)
    if cap is None:
        return limit
    return cap if limit is None else min(limit, cap)


def _run_record(
    app: App,
    record: BatchRecord,
    delivery: Delivery,
    limit: float | None,
    settle: SettleFn,
    platform_holds: bool,
) -> RecordResult:
    """Execute and settle one record; a held record is settled (the broker keeps it invisible)
    unless the platform holds it itself."""
    from cloudq.execute import execute
    from cloudq.outcome import Defer
    from cloudq.settle import holds

    outcome = execute(delivery, app, hard_limit=limit)
    held = isinstance(outcome, Defer) and holds(app, delivery)
    if not (held and platform_holds):
        settle(app, delivery, outcome, _left_to_the_platform)
    return RecordResult(record, Status.HELD if held else Status.SETTLED, delivery, outcome)


def _left_to_the_platform(delivery: Delivery) -> None:
    """Acknowledging is the platform's: the mapping deletes, the response or the host acks."""


def run_batch(
    app: App,
    platform: str,
    records: Sequence[BatchRecord],
    *,
    context: object = None,
    time_left: Callable[[], float | None] | None = None,
    margin: float = 1.0,
    start_above: float | None = None,
    time_limit: float | None = None,
    on_failure: FailureHandler | None = None,
    platform_holds: bool = False,
    settle: SettleFn | None = None,
) -> list[RecordResult]:
    """Run a batch of records as a worker would, leaving the acknowledgement to the platform.

    ``begin_invocation()`` first (heartbeat, revoked ids, ``process_start``), then each record
    in order: decoded, executed with the time left less ``margin`` (and at most ``time_limit``)
    as its hard limit, its outcome settled. A record that raises (a ``BaseException`` too, as
    ``RecordInterrupted``) fails alone and ``on_failure`` is called with it before the next
    starts; in a FIFO batch a failed or held record stops the batch: the rest are not started.
    When ``time_left()`` (seconds) is below ``start_above``, no further record is started.
    Never raises for a record: every one has a ``RecordResult``, in the batch's order.

    :param app: the app whose tasks run.
    :param platform: the heartbeat's platform name (``lambda``, ``cloud-functions``...).
    :param records: the event's records, translated by the handler.
    :param context: the platform's invocation context, for the heartbeat.
    :param time_left: seconds left in the invocation (None: unknown).
    :param margin: seconds kept back from each task's limit to apply its outcome.
    :param start_above: no record starts with less time left than this (None: always start).
    :param time_limit: a hard limit for every task, whatever the time left.
    :param on_failure: called with each failed record, before the next one runs; must not
        raise.
    :param platform_holds: the platform keeps a held record away itself (Pub/Sub's nack of a
        push delivery): it is not settled. Otherwise ``settle()`` holds it with the broker.
    :param settle: what applies an outcome (default ``cloudq.settle.settle``): a handler passes
        the one its module names, so that a test can observe what its handler applied.
    """
    time_limit = check_seconds(time_limit, "time_limit")
    if settle is None:
        from cloudq.settle import settle as default

        settle = default
    begin_invocation(app, platform, context, len(records))
    results: list[RecordResult] = []
    for index, record in enumerate(records):
        left = None if time_left is None else time_left()
        if left is not None and start_above is not None and left < start_above:
            logger.warning(
                "%.1f s left: %d record(s) not started, left for redelivery",
                left,
                len(records) - index,
            )
            results += [RecordResult(r, Status.NOT_STARTED) for r in records[index:]]
            break
        limit = _time_limit(left, margin, time_limit)
        delivery: Delivery | None = None
        try:
            delivery = contained(record.decode)
            if delivery is None:
                result = RecordResult(record, Status.REFUSED)
            else:
                result = contained(
                    partial(_run_record, app, record, delivery, limit, settle, platform_holds)
                )
        except Exception as exc:  # noqa: BLE001 - one record's failure is that record's
            result = RecordResult(record, Status.FAILED, delivery, error=exc)
            if on_failure is not None:
                on_failure(result)
        results.append(result)
        if record.fifo and result.status in (Status.FAILED, Status.HELD):
            # FIFO order: nothing after this record may run before it does.
            results += [RecordResult(r, Status.NOT_STARTED) for r in records[index + 1 :]]
            break
    return results
