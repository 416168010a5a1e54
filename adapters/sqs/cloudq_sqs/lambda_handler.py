"""The AWS Lambda handler: an SQS event's records through the same ``execute()`` as a worker.

``handler = cloudq_sqs.lambda_handler(app)`` is the function's entry point. Each record becomes a
Delivery; its outcome is applied as a worker would, except that acknowledging is left to the
event source mapping (it deletes the records the handler reports as successful):

- done: reported as success;
- retry: a copy is sent with its backoff delay, the record is reported as success;
- dead letter: sent to the DLQ (and deleted), reported as success;
- deferred (eta in the future): re-sent with the remaining delay, reported as success (on a
  FIFO queue: held invisible until due and reported as failed, so the mapping keeps it);
- an outcome that could not be applied (a send failed, the claim-check store was down), or a
  ``BaseException`` out of the record's task (``SystemExit``...): the record goes into
  ``batchItemFailures`` and SQS redelivers it after its visibility timeout; the other records
  keep their own outcomes.

An event that is not an SQS event at all (not a mapping, no ``Records`` list of mappings, a
record without a ``messageId`` to report it by), or a context without Lambda's
``get_remaining_time_in_millis``, raises ``MalformedEvent`` before any record runs: the
function's trigger is wrong (an EventBridge rule aimed at the function instead of its queue
would otherwise be acknowledged as an empty batch). A record whose ``eventSourceARN`` is not one
of this broker's queues (another prefix, another region) is not run: its ``ForeignQueue`` is
logged and it is reported as failed, so it ends in that queue's own dead-letter queue. The
rules are ``cloudq.serverless``'s, the same in every handler.

The mapping must have ``ReportBatchItemFailures`` on (the Terraform module sets it). A record is
not started when too little of the invocation's time is left; it is reported as failed instead,
so a Lambda timeout never leaves a record half-done without SQS redelivering it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery
from cloudq.adapters.wire import is_fifo
from cloudq.errors import ForeignQueue, MalformedEvent
from cloudq.logsafe import get_logger
from cloudq.serverless import (
    BatchRecord,
    RecordResult,
    end_invocation,
    foreign_queue,
    own_queue,
    require_broker,
    run_batch,
)
from cloudq.settle import settle
from cloudq_sqs.broker import MESSAGE_ID_ATTRIBUTE, SQSBroker, decode_body

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.lambda")
PLATFORM = "lambda"
"""The heartbeat's and the hooks' name for this platform."""

ARN_PARTS = 6
"""``arn:PARTITION:sqs:REGION:ACCOUNT:QUEUE``"""
SAFETY_MARGIN_SECONDS = 1.0
"""Time kept back from each task's limit to apply its outcome before Lambda's own timeout; no
record starts with less than twice this left."""

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def source_queue(broker: SQSBroker, record: Mapping[str, Any]) -> str | None:
    """The cloudq queue a record came from, or ``None`` if its ``eventSourceARN`` is not one of
    this broker's queues: not an SQS ARN, another region (when the broker's client names one),
    or a name outside the broker's prefix. The broker does not know its account: not checked.
    """
    parts = str(record.get("eventSourceARN") or "").split(":")
    if len(parts) != ARN_PARTS or parts[0] != "arn" or parts[2] != "sqs":
        return None
    region = getattr(getattr(getattr(broker, "client", None), "meta", None), "region_name", None)
    if isinstance(region, str) and region and parts[3] != region:
        return None
    return own_queue(broker, parts[5])


def record_to_delivery(broker: SQSBroker, record: dict[str, Any], queue: str) -> Delivery:
    """One record of an SQS event (from ``queue``) as the Delivery a worker would have got."""
    attributes = {
        name: value["stringValue"]
        for name, value in (record.get("messageAttributes") or {}).items()
        if isinstance(value, dict) and "stringValue" in value
    }
    return Delivery(
        queue=queue,
        body=decode_body(record["body"], attributes),
        message_id=attributes.pop(MESSAGE_ID_ATTRIBUTE, None) or record["messageId"],
        receive_count=int(record.get("attributes", {}).get("ApproximateReceiveCount", 1)),
        handle=record["receiptHandle"],
        attributes=attributes,
        group=record.get("attributes", {}).get("MessageGroupId"),
    )


def event_records(event: Any) -> list[dict[str, Any]]:
    """The event's records; ``MalformedEvent`` if it is not an SQS event at all, or if a
    record has no ``messageId`` (it could not be reported: Lambda would fail the whole batch)."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if (
        not isinstance(event, Mapping)
        or not isinstance(records, list)
        or not all(isinstance(r, Mapping) for r in records)
    ):
        raise MalformedEvent(
            f"not an SQS event (a mapping with a list of records under 'Records'): got "
            f"{type(event).__name__}{'' if records is None else ' with ' + type(records).__name__}"
            "; the function's trigger must be an SQS event source mapping"
        )
    for index, record in enumerate(records):
        message_id = record.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            raise MalformedEvent(
                f"not an SQS event: record {index} has no messageId (got {message_id!r}), so "
                "its outcome could not be reported; no record was run"
            )
    return list(records)


def _batch_record(broker: SQSBroker, record: dict[str, Any], queue: str | None) -> BatchRecord:
    """One SQS record for ``run_batch``: refused (logged) when not from this broker's queues."""

    def decode() -> Delivery | None:
        if queue is None:
            raise foreign_queue(
                str(record.get("eventSourceARN")),
                broker,
                "reported as failed, so it ends in that queue's own dead-letter queue",
            )
        return record_to_delivery(broker, record, queue)

    return BatchRecord(
        id=str(record["messageId"]),
        decode=decode,
        fifo=is_fifo(str(record.get("eventSourceARN", ""))),
    )


def _log_failure(result: RecordResult) -> None:
    if isinstance(result.error, ForeignQueue):  # a trigger's mistake: no traceback
        logger.warning("record %s: %s", result.record.id, result.error)
        return
    logger.error(
        "record %s could not be processed; SQS will redeliver it",
        result.record.id,
        exc_info=result.error,
    )


def process_event(app: App, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run every record; return the partial-batch response Lambda expects."""
    broker = require_broker(app, SQSBroker, "the Lambda SQS handler", "sqs://")
    records = event_records(event)
    if context is not None and not callable(getattr(context, "get_remaining_time_in_millis", None)):
        raise MalformedEvent(
            f"not a Lambda context ({type(context).__name__}: no get_remaining_time_in_millis); "
            "no record was run"
        )
    batch = [_batch_record(broker, r, source_queue(broker, r)) for r in records]

    def time_left() -> float | None:
        return None if context is None else context.get_remaining_time_in_millis() / 1000

    results = run_batch(
        app,
        PLATFORM,
        batch,
        context=context,
        time_left=time_left,
        margin=SAFETY_MARGIN_SECONDS,
        start_above=2 * SAFETY_MARGIN_SECONDS,
        on_failure=_log_failure,
        settle=settle,
    )
    # Held (a FIFO record not yet due) is kept invisible by settle(): the mapping must not
    # delete it, so it is reported as failed like every record that did not settle.
    failed = [r.record.id for r in results if not r.settled]
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}


def lambda_handler(app: App) -> LambdaHandler:
    """The function to name as the Lambda handler: ``handler = lambda_handler(app)``."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return process_event(app, event, context)
        finally:
            end_invocation(app, PLATFORM)

    return handler
