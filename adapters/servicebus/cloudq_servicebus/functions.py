"""The Azure Functions handler: Service Bus trigger messages through the same ``execute()`` as a
worker.

``main = cloudq_servicebus.functions_handler(app)`` is the function (``cardinality: one`` gets
one ``func.ServiceBusMessage``, ``many`` a list). Settling is the host's: with ``autoComplete``
(its default) it completes *every* message of the trigger when the function returns and
abandons every one when it raises. So each message's outcome is applied as a worker would,
except the final ack, and a message that fails must not make the function raise (the host would
abandon the good ones too, and they would run again on every redelivery):

- done, retried (a copy is sent with its backoff), deferred (a copy is scheduled for its eta),
  dead-lettered (a copy goes to ``<queue>-dlq`` with its reason): the host completes it;
- an outcome that could not be applied (a send failed, the claim-check store was down, the task
  raised a ``BaseException``): a copy of its original bytes is sent back to its queue after
  ``redelivery_delay()`` carrying the deliveries so far in ``REDELIVERY_ATTRIBUTE``, and the host
  completes the original. The count is read back into ``Delivery.receive_count``, so its tries
  still end in ``<queue>-dlq`` after ``queue_max_receive_count`` deliveries, as Service Bus's own
  max delivery count would have it;
- only when even that copy cannot be sent (or the message cannot be read at all) does the
  function raise ``BatchFailed``: the host abandons the batch and Service Bus redelivers all of
  it (those that succeeded run again: at-least-once, never lost).

The Python host's SDK-type bindings (``ServiceBusMessageActions``, settling each message
itself with ``autoComplete`` off) would do this without copies, but they need the host's
gRPC extension, which cannot run here; the copy works with the classic binding everywhere.

**Session mode** (a FIFO queue, ``*.fifo``: the trigger has ``isSessionsEnabled``, and a batch
is one session's messages, in order): messages run in order and processing stops at the first
one that did not simply finish: its outcome could not be applied, or it is due later (a FIFO
message waits in its place; a copy would run after its group's later messages). The function
then raises ``BatchFailed``, so the host abandons the batch: the session's messages come back in
order, those before the stop run again (at-least-once), as the SQS FIFO path reports the rest of
its batch as failed.

The queue is the trigger's (``queue=`` here, as the function's binding names it, without the
broker's prefix). ``time_limit`` caps each task below the function's own timeout. Misuse raises
what it does in every handler (``cloudq.serverless``): a bad ``time_limit`` or a queue name the
broker would never give is a ``ConfigurationError``, a trigger argument that is not a Service Bus
message (or a list of them) a ``MalformedEvent``, before any message runs. The
``azure-functions`` package is imported only for type checking: the Functions host provides it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery, OutgoingMessage
from cloudq.adapters.wire import is_fifo
from cloudq.errors import MalformedEvent
from cloudq.logsafe import get_logger
from cloudq.outcome import Defer, Outcome
from cloudq.serverless import (
    BatchRecord,
    RecordResult,
    check_queue,
    check_seconds,
    end_invocation,
    require_broker,
    run_batch,
)
from cloudq.settle import settle
from cloudq_servicebus.broker import ServiceBusBroker

if TYPE_CHECKING:
    import azure.functions as func

    from cloudq.app import App

logger = get_logger("cloudq.servicebus.functions")

FunctionsHandler = Callable[["func.ServiceBusMessage | list[func.ServiceBusMessage]"], None]

PLATFORM = "azure-functions"
REDELIVERY_ATTRIBUTE = "cloudq-redeliveries"
"""Application property of a copy sent back by the handler: how many deliveries the message had
before this copy (the host's ``delivery_count`` starts again at 1 for the copy)."""
_COUNT = re.compile(r"[0-9]{1,9}")
"""A redelivery count as the handler writes it; anything else is not trusted and ignored."""
MAX_REDELIVERY_DELAY_SECONDS = 30.0


def redelivery_delay(deliveries: int) -> float:
    """Seconds before a copy sent back comes again: one per delivery so far, at most 30."""
    return min(float(deliveries), MAX_REDELIVERY_DELAY_SECONDS)


class BatchFailed(Exception):
    """Some messages of a trigger batch could not be settled nor sent back: the host must
    abandon the batch."""


def message_ident(message: Any) -> str:
    """How a trigger message is named in deliveries, logs and failure reports, one name for
    all three: its message id, else its sequence number (``"None"`` if it has neither)."""
    return str(getattr(message, "message_id", None) or getattr(message, "sequence_number", None))


def message_to_delivery(queue: str, message: func.ServiceBusMessage) -> Delivery:
    """One trigger message as the Delivery a worker would have received.

    The host's ``delivery_count`` counts this delivery (1 on the first), as cloudq's does; a
    copy sent back by the handler adds the deliveries before it (``REDELIVERY_ATTRIBUTE``).
    """
    properties = {str(k): str(v) for k, v in (message.application_properties or {}).items()}
    before = properties.pop(REDELIVERY_ATTRIBUTE, None)
    if before is not None and not _COUNT.fullmatch(before):
        logger.warning(
            "message %s: %s=%r is not a count; ignored",
            message.message_id,
            REDELIVERY_ATTRIBUTE,
            before,
        )
        before = None
    return Delivery(
        queue=queue,
        body=message.get_body(),
        message_id=message_ident(message),
        receive_count=int(message.delivery_count or 1) + int(before or 0),
        handle=None,
        attributes=properties,
    )


class _Stop(Exception):
    """A session's message that must keep its place: the rest of the batch waits."""


def _settle_in_session(
    app: App, delivery: Delivery, outcome: Outcome, ack: Callable[[Delivery], None]
) -> None:
    """Session mode's settle: a deferred message keeps its place in its session (the batch
    comes back, in order) instead of a scheduled copy overtaken by the rest of its group."""
    if isinstance(outcome, Defer):
        raise _Stop(f"due at {outcome.until.isoformat()}: it waits in its place in its session")
    settle(app, delivery, outcome, ack)


def _send_back(app: App, delivery: Delivery, error: str) -> None:
    """Give a message that could not be settled a delivery of its own (see the module's doc)."""
    deliveries = delivery.receive_count
    if deliveries >= app.conf.queue_max_receive_count:
        reason = f"not settled in {deliveries} deliveries (queue_max_receive_count): {error}"
        logger.error("message %s dead-lettered: %s", delivery.message_id, reason)
        app.broker.dead_letter(delivery, reason)
        return
    copy = OutgoingMessage(
        body=delivery.body,
        delay_seconds=redelivery_delay(deliveries),
        message_id=delivery.message_id,
        attributes={**delivery.attributes, REDELIVERY_ATTRIBUTE: str(deliveries)},
    )
    app.broker.send(delivery.queue, [copy])
    logger.warning(
        "message %s (delivery %d) sent back to %s to come again in %.0fs",
        delivery.message_id,
        deliveries,
        delivery.queue,
        copy.delay_seconds,
    )


def _check_messages(messages: Sequence[Any]) -> None:
    """``MalformedEvent`` unless every item is a trigger message (it has ``get_body``)."""
    for index, message in enumerate(messages):
        if not callable(getattr(message, "get_body", None)):
            raise MalformedEvent(
                f"not a Service Bus trigger message: item {index} is a {type(message).__name__}; "
                "the function's binding must be a serviceBusTrigger; no message was run"
            )


def process_messages(
    app: App,
    queue: str,
    messages: Sequence[func.ServiceBusMessage],
    time_limit: float | None = None,
) -> list[str]:
    """Run every message, sending back those whose outcome could not be applied; return the ids
    of the messages that could not even be sent back (the function must then raise). On a
    session queue (``*.fifo``), in order up to the first message that did not simply finish:
    it and the rest are returned, so that the batch comes back in order."""
    handler = "the Service Bus trigger handler"
    broker = require_broker(app, ServiceBusBroker, handler, "servicebus://")
    check_queue(broker, queue, handler)
    _check_messages(messages)
    fifo = is_fifo(queue)
    unsettled: list[str] = []

    def on_failure(result: RecordResult) -> None:
        delivery = result.delivery
        if delivery is None:
            logger.error(
                "a trigger message could not be read; the batch comes back", exc_info=result.error
            )
            unsettled.append(result.record.id)
        elif isinstance(result.error, _Stop):
            logger.info(
                "session message %s %s; the batch comes back", result.record.id, result.error
            )
        elif fifo:
            logger.error(
                "session message %s failed; the batch comes back",
                delivery.message_id,
                exc_info=result.error,
            )
        else:
            logger.error(
                "message %s could not be processed", delivery.message_id, exc_info=result.error
            )
            try:
                _send_back(app, delivery, f"{type(result.error).__name__}: {result.error}")
            except Exception:
                logger.exception("message %s could not be sent back either", delivery.message_id)
                unsettled.append(delivery.message_id)

    records = [
        BatchRecord(
            id=message_ident(message),
            decode=partial(message_to_delivery, queue, message),
            fifo=fifo,
        )
        for message in messages
    ]
    results = run_batch(
        app,
        PLATFORM,
        records,
        time_limit=time_limit,
        on_failure=on_failure,
        settle=_settle_in_session if fifo else settle,
    )
    if fifo:
        return [r.record.id for r in results if not r.settled]
    return unsettled


def functions_handler(app: App, queue: str, time_limit: float | None = None) -> FunctionsHandler:
    """The function to bind to a Service Bus trigger on ``queue`` (single or batch)."""
    time_limit = check_seconds(time_limit, "time_limit")

    def main(msg: func.ServiceBusMessage | list[func.ServiceBusMessage]) -> None:
        batch = list(msg) if isinstance(msg, list) else [msg]
        try:
            unsettled = process_messages(app, queue, batch, time_limit)
        finally:
            end_invocation(app, PLATFORM)
        if unsettled:
            raise BatchFailed(
                f"{len(unsettled)} of {len(batch)} message(s) could neither be processed nor "
                f"sent back: {unsettled}; the host abandons the batch and Service Bus redelivers"
            )

    return main
