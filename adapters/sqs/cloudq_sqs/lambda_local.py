"""``cloudq lambda-local``: a local SQS event source mapping, feeding real messages to a handler.

moto cannot run Lambda functions without Docker, so this is how the handler runs end to end
here, and how users try it before deploying. It does what the mapping does: long-polls the queue
(the queue's own visibility timeout applies), builds the event in Lambda's exact shape, invokes
the handler with a context whose clock runs down from the function timeout, deletes the records
that were not reported in ``batchItemFailures``, and leaves the others to come back after their
visibility timeout. A handler that raises, or reports an ``itemIdentifier`` that is empty or
names no record of the batch, fails the whole batch, as on Lambda.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloudq.logsafe import get_logger
from cloudq.serverless import require_broker
from cloudq_sqs.broker import SQSBroker
from cloudq_sqs.lambda_handler import LambdaHandler

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.lambda_local")

MAX_BATCH = 10
LONG_POLL_SECONDS = 5


class LocalContext:
    """The parts of Lambda's context object that handlers use."""

    def __init__(self, function_name: str, timeout_seconds: float, memory_mb: int = 128) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _record(message: dict[str, Any], arn: str, region: str) -> dict[str, Any]:
    attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": region,
    }


@dataclass
class PollStats:
    invocations: int = 0
    records: int = 0
    failed: int = 0
    deleted: int = 0
    errors: list[str] = field(default_factory=list)


class LocalEventSource:
    """Polls queues and invokes ``handler`` with SQS events, like an event source mapping."""

    def __init__(
        self,
        app: App,
        handler: LambdaHandler,
        queues: list[str],
        *,
        batch_size: int = MAX_BATCH,
        timeout_seconds: float = 30.0,
        function_name: str = "cloudq-local",
    ) -> None:
        broker = require_broker(app, SQSBroker, "lambda-local", "sqs://")
        self.broker = broker
        self.handler = handler
        self.queues = queues
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.timeout_seconds = timeout_seconds
        self.function_name = function_name
        self.stats = PollStats()
        self._arns = {q: broker.queue_arn(q) for q in queues}
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self, queue: str, wait_seconds: int = 0) -> int:
        """One receive and (if anything came) one invocation; the number of records."""
        client = self.broker.client
        url = self.broker.queue_url(queue)
        messages = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        arn = self._arns[queue]
        region = arn.split(":")[3]
        event = {"Records": [_record(m, arn, region) for m in messages]}
        context = LocalContext(self.function_name, self.timeout_seconds)
        self.stats.invocations += 1
        self.stats.records += len(messages)
        ids = {m["MessageId"] for m in messages}
        try:
            response = self.handler(event, context)
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        except Exception as exc:
            logger.exception("handler raised: all %d record(s) come back", len(messages))
            self.stats.errors.append(repr(exc))
            failed = ids
        if not failed <= ids:
            logger.error(
                "batchItemFailures names %s, not a record of the batch: Lambda fails the whole "
                "batch, all %d record(s) come back",
                sorted(str(f) for f in failed - ids),
                len(messages),
            )
            failed = ids
        done = [m for m in messages if m["MessageId"] not in failed]
        self.stats.failed += len(messages) - len(done)
        if done:
            client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
            self.stats.deleted += len(done)
        logger.info("invocation: %d record(s), %d failed", len(messages), len(messages) - len(done))
        return len(messages)

    def run(self) -> None:
        """Poll until ``stop()``; each idle queue is long-polled for a share of 5 s."""
        share = max(1, LONG_POLL_SECONDS // len(self.queues))
        while not self._stop.is_set():
            got = sum(self.poll_once(q) for q in self.queues)
            if not got:
                for q in self.queues:
                    if self._stop.is_set() or self.poll_once(q, wait_seconds=share):
                        break
