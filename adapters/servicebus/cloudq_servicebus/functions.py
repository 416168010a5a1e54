"""The Azure Functions handler: Service Bus trigger messages through the same ``execute()`` as a
worker.

``main = cloudq_servicebus.functions_handler(app)`` is the function (``cardinality: one`` gets
one ``func.ServiceBusMessage``, ``many`` a list). Settling is the host's: with ``autoComplete``
(its default) it completes the trigger's messages when the function returns and abandons them
when it raises. So each message's outcome is applied as a worker would, except the final ack:

- done, retried (a copy is sent with its backoff), deferred (a copy is scheduled for its eta),
  dead-lettered (a copy goes to ``<queue>-dlq`` with its reason): the function returns, the host
  completes the original;
- an outcome that could not be applied (a send failed, the claim-check store was down): after the
  rest of the batch is done the function raises, the host abandons the batch and Service Bus
  redelivers it (those that succeeded run again: at-least-once).

The queue is the trigger's (``queue=`` here, as the function's binding names it, without the
broker's prefix). ``time_limit`` caps each task below the function's own timeout. The
``azure-functions`` package is imported only for type checking: the Functions host provides it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery
from cloudq.execute import execute
from cloudq.logsafe import get_logger
from cloudq.serverless import contained
from cloudq.settle import settle
from cloudq_servicebus.broker import ServiceBusBroker

if TYPE_CHECKING:
    import azure.functions as func

    from cloudq.app import App

logger = get_logger("cloudq.servicebus.functions")

FunctionsHandler = Callable[["func.ServiceBusMessage | list[func.ServiceBusMessage]"], None]


class BatchFailed(Exception):
    """Some messages of a trigger batch could not be settled: the host must abandon them."""


def message_to_delivery(queue: str, message: func.ServiceBusMessage) -> Delivery:
    """One trigger message as the Delivery a worker would have received.

    The host's ``delivery_count`` counts this delivery (1 on the first), as cloudq's does.
    """
    properties: dict[str, Any] = dict(message.application_properties or {})
    return Delivery(
        queue=queue,
        body=message.get_body(),
        message_id=str(message.message_id or message.sequence_number),
        receive_count=int(message.delivery_count or 1),
        handle=None,
        attributes={str(k): str(v) for k, v in properties.items()},
    )


def _left_to_host(delivery: Delivery) -> None:
    """The host completes the trigger's messages when the function returns."""


def process_messages(
    app: App,
    queue: str,
    messages: Sequence[func.ServiceBusMessage],
    time_limit: float | None = None,
) -> list[str]:
    """Run every message; return the ids of those whose outcome could not be applied."""
    if not isinstance(app.broker, ServiceBusBroker):
        raise TypeError(
            f"the Service Bus trigger handler needs a servicebus:// broker, not {app.broker!r}"
        )
    failed: list[str] = []
    for message in messages:
        delivery = message_to_delivery(queue, message)
        try:
            contained(partial(_run, app, delivery, time_limit))
        except Exception:
            logger.exception(
                "message %s could not be processed; it will come back", delivery.message_id
            )
            failed.append(delivery.message_id)
    return failed


def _run(app: App, delivery: Delivery, time_limit: float | None) -> None:
    outcome = execute(delivery, app, hard_limit=time_limit)
    settle(app, delivery, outcome, ack=_left_to_host)


def functions_handler(app: App, queue: str, time_limit: float | None = None) -> FunctionsHandler:
    """The function to bind to a Service Bus trigger on ``queue`` (single or batch)."""

    def main(msg: func.ServiceBusMessage | list[func.ServiceBusMessage]) -> None:
        batch = list(msg) if isinstance(msg, list) else [msg]
        failed = process_messages(app, queue, batch, time_limit)
        if failed:
            raise BatchFailed(
                f"{len(failed)} of {len(batch)} message(s) could not be processed: {failed}; "
                "the host abandons them and Service Bus redelivers"
            )

    return main
