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

The queue is the trigger's (``queue=`` here, as the function's binding names it, without the
broker's prefix). ``time_limit`` caps each task below the function's own timeout. The
``azure-functions`` package is imported only for type checking: the Functions host provides it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from cloudq.adapters.base import Delivery, OutgoingMessage
from cloudq.logsafe import get_logger
from cloudq.serverless import BatchRecord, RecordResult, require_broker, run_batch
from cloudq.settle import settle
from cloudq_servicebus.broker import ServiceBusBroker

if TYPE_CHECKING:
    import azure.functions as func

    from cloudq.app import App

logger = get_logger("cloudq.servicebus.functions")

FunctionsHandler = Callable[["func.ServiceBusMessage | list[func.ServiceBusMessage]"], None]

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
        message_id=str(message.message_id or message.sequence_number),
        receive_count=int(message.delivery_count or 1) + int(before or 0),
        handle=None,
        attributes=properties,
    )


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


def process_messages(
    app: App,
    queue: str,
    messages: Sequence[func.ServiceBusMessage],
    time_limit: float | None = None,
) -> list[str]:
    """Run every message, sending back those whose outcome could not be applied; return the ids
    of the messages that could not even be sent back (the function must then raise)."""
    require_broker(app, ServiceBusBroker, "the Service Bus trigger handler", "servicebus://")
    unsettled: list[str] = []

    def on_failure(result: RecordResult) -> None:
        delivery = result.delivery
        if delivery is None:
            logger.error(
                "a trigger message could not be read; the batch comes back", exc_info=result.error
            )
            unsettled.append(result.record.id)
            return
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
            id=str(getattr(message, "message_id", None) or "?"),
            decode=partial(message_to_delivery, queue, message),
        )
        for message in messages
    ]
    run_batch(
        app,
        "azure-functions",
        records,
        time_limit=time_limit,
        on_failure=on_failure,
        settle=settle,
    )
    return unsettled


def functions_handler(app: App, queue: str, time_limit: float | None = None) -> FunctionsHandler:
    """The function to bind to a Service Bus trigger on ``queue`` (single or batch)."""

    def main(msg: func.ServiceBusMessage | list[func.ServiceBusMessage]) -> None:
        batch = list(msg) if isinstance(msg, list) else [msg]
        unsettled = process_messages(app, queue, batch, time_limit)
        if unsettled:
            raise BatchFailed(
                f"{len(unsettled)} of {len(batch)} message(s) could neither be processed nor "
                f"sent back: {unsettled}; the host abandons the batch and Service Bus redelivers"
            )

    return main
