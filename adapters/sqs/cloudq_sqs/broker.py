"""``sqs://``: cloudq's adapter for Amazon SQS.

Configuration follows boto3's own conventions so an existing AWS environment just works:
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_SQS``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, the usual
credential chain and ``AWS_MAX_ATTEMPTS`` / ``AWS_RETRY_MODE``. The URL only adds what boto3 has
no word for: ``sqs://?prefix=myapp-&region=eu-west-1`` (prefix also from ``CLOUDQ_SQS_PREFIX``),
``endpoint_url=``, ``max_message_bytes=`` and ``max_delay_seconds=`` (lower the native delay cap,
e.g. to see delay hops in tests).

boto3 is imported when a broker is opened, never when ``cloudq`` is: Lambda cold starts matter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from cloudq.adapters.base import (
    DEAD_LETTER_SUFFIX,
    BrokerLimits,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    QueueStats,
    dead_letter_queue_name,
)
from cloudq.adapters.skeleton import BrokerBase, PartialSendError, QueueNotFoundError
from cloudq.adapters.urls import broker_url, env_setting, url_count
from cloudq.adapters.wire import DEAD_LETTER_REASON_ATTRIBUTE as REASON_ATTRIBUTE
from cloudq.adapters.wire import FIFO_SUFFIX, MESSAGE_ID_ATTRIBUTE, is_fifo
from cloudq.clock import Clock
from cloudq.errors import BrokerError, ConfigurationError, MessageTooLarge
from cloudq.logsafe import get_logger
from cloudq_sqs import limits as lim
from cloudq_sqs.aws_errors import AWS_REGION_ENV, api_name, error_code

logger = get_logger("cloudq.sqs")

__all__ = [
    "ENCODING_ATTRIBUTE",
    "MESSAGE_ID_ATTRIBUTE",
    "REASON_ATTRIBUTE",
    "PartialSendError",
    "QueueNotFoundError",
    "SQSBroker",
    "decode_body",
    "encode_body",
    "open_sqs_broker",
    "send_with_retries",
    "wire_size",
]

ENCODING_ATTRIBUTE = "cloudq-body-encoding"
"""Set to ``base64`` when a body is not text SQS accepts (bytes that are not UTF-8 XML chars)."""
_HIDDEN_ATTRIBUTES = frozenset({MESSAGE_ID_ATTRIBUTE, ENCODING_ATTRIBUTE})
DEAD_LETTER_GROUP = "cloudq-dead-letter"
"""MessageGroupId of dead letters in a FIFO dead-letter queue: their order does not matter."""

_URL_OPTIONS = frozenset(
    {"region", "prefix", "endpoint_url", "max_message_bytes", "max_delay_seconds"}
)
_NO_SUCH_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueNotFoundError"})
_QUEUE_EXISTS = frozenset({"QueueAlreadyExists", "QueueNameExists"})
_PURGE_IN_PROGRESS = frozenset(
    {"AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress"}
)
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_FIFO_TOKEN = re.compile(r"[!-~]{1,128}")  # alphanumerics and punctuation, SQS's rule
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# Characters SQS accepts in a body or string attribute (XML 1.0's Char production).
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# --- pure helpers -------------------------------------------------------------------------------
def encode_body(body: bytes) -> tuple[str, bool]:
    """SQS bodies are XML-safe text: send UTF-8 text as is, anything else base64 (flag True)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if not _NOT_XML_CHAR.search(text):
            return text, False
    return base64.b64encode(body).decode("ascii"), True


def decode_body(text: str, attributes: dict[str, str]) -> bytes:
    """Undo ``encode_body`` given the message's string attributes.

    A body flagged base64 that is not (a foreign or corrupted message) comes back as its text:
    the envelope decoder then dead-letters it with its reason. Raising here failed the whole
    receive, so one such message held back every message received with it.
    """
    if attributes.get(ENCODING_ATTRIBUTE) == "base64":
        try:
            return base64.b64decode(text)
        except ValueError:  # binascii.Error, or text that is not ASCII
            pass
    return text.encode("utf-8")


def fifo_token(value: str) -> str:
    """A valid MessageGroupId / MessageDeduplicationId: the value itself, else its SHA-256.

    Hashing keeps equal ids equal, so deduplication and grouping still hold for long task ids.
    """
    if _FIFO_TOKEN.fullmatch(value):
        return value
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def wire_size(body: str, attributes: dict[str, str]) -> int:
    """Bytes SQS counts against MaximumMessageSize: body plus attribute names, types, values."""
    size = len(body.encode("utf-8"))
    for name, value in attributes.items():
        size += len(name.encode("utf-8")) + len("String") + len(value.encode("utf-8"))
    return size


def send_with_retries(
    call: Callable[[list[dict[str, Any]]], dict[str, Any]],
    entries: list[dict[str, Any]],
    tries: int = lim.SEND_TRIES,
    backoff: float = lim.SEND_BACKOFF_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Run SendMessageBatch, re-sending only entries that failed on the service's side.

    Succeeded entries are never sent again (no duplicates); sender faults (a bad entry) are not
    retried since they cannot succeed. Returns entry id -> reason for every entry left unsent.
    """
    failures: dict[str, str] = {}
    pending = entries
    for attempt in range(1, tries + 1):
        response = call(pending)
        by_id = {entry["Id"]: entry for entry in pending}
        retry: list[dict[str, Any]] = []
        for ok in response.get("Successful", []):
            failures.pop(ok["Id"], None)
        for failed in response.get("Failed", []):
            failures[failed["Id"]] = f"{failed.get('Code')}: {failed.get('Message', '')}"
            if not failed.get("SenderFault") and failed["Id"] in by_id:
                retry.append(by_id[failed["Id"]])
        if not retry or attempt == tries:
            break
        logger.warning("SQS rejected %d of %d entries; re-sending them", len(retry), len(pending))
        sleep(backoff * 2 ** (attempt - 1))
        pending = retry
    return failures


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _seconds(value: float, cap: int) -> int:
    """Whole seconds for SQS, rounded up (never shorter than asked) and kept within 0..cap."""
    return min(cap, max(0, math.ceil(value)))


def _string_attributes(message: dict[str, Any]) -> dict[str, str]:
    return {
        name: str(value["StringValue"])
        for name, value in message.get("MessageAttributes", {}).items()
        if "StringValue" in value
    }


def _check_attributes(attributes: dict[str, str]) -> None:
    """Reject attribute names and values SQS would refuse, before anything is sent."""
    for name, value in attributes.items():
        lowered = name.lower()
        if (
            not _ATTRIBUTE_NAME.fullmatch(name)
            or len(name) > lim.MAX_ATTRIBUTE_NAME_CHARS
            or name.startswith(".")
            or name.endswith(".")
            or ".." in name
            or lowered.startswith(("aws.", "amazon."))
        ):
            raise ConfigurationError(f"{name!r} is not a valid SQS message attribute name")
        if not value or _NOT_XML_CHAR.search(value):
            raise ConfigurationError(
                f"SQS message attribute {name!r} must be non-empty text without control characters"
            )


# --- the broker ---------------------------------------------------------------------------------
class SQSBroker(BrokerBase):
    """One boto3 SQS client plus a cache of queue URLs and sizes; thread-safe like the client."""

    provider = "SQS"
    reason_max_chars = lim.MAX_REASON_CHARS
    max_attributes = lim.MAX_MESSAGE_ATTRIBUTES
    reserved_attributes = lim.RESERVED_MESSAGE_ATTRIBUTES
    name_rule = (
        f"up to {lim.MAX_QUEUE_NAME_CHARS} letters, digits, '-' and '_' (prefix included), "
        "optionally ending in '.fifo'"
    )

    def __init__(
        self,
        clock: Clock,
        *,
        region: str | None = None,
        prefix: str = "",
        endpoint_url: str | None = None,
        max_message_bytes: int | None = None,
        max_delay_seconds: int | None = None,
        client: Any = None,
    ) -> None:
        from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
            BotoCoreError,
            ClientError,
        )

        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        self._clock = clock
        self.prefix = prefix
        self._configured_max_bytes = max_message_bytes
        self.limits = BrokerLimits(
            max_delay_seconds=min(
                max_delay_seconds or lim.MAX_DELAY_SECONDS, lim.MAX_DELAY_SECONDS
            ),
            max_lease_seconds=lim.MAX_VISIBILITY_SECONDS,
            max_message_bytes=max_message_bytes or lim.DEFAULT_MAX_MESSAGE_BYTES,
            max_batch=lim.MAX_BATCH,
            long_poll_returns_at_once=True,
        )
        self._urls: dict[str, str] = {}
        self._sizes: dict[str, int] = {}
        if client is None:
            import boto3  # type: ignore[import-untyped, unused-ignore]

            region = region or env_setting(*AWS_REGION_ENV)
            try:
                from botocore.config import Config

                # Every request is built here from checked values: botocore's client-side
                # parameter validation would only re-check them, at about 12 % of each call's CPU.
                client = boto3.session.Session().client(
                    "sqs",
                    region_name=region,
                    endpoint_url=endpoint_url,
                    config=Config(parameter_validation=False),
                )
            except BotoCoreError as exc:
                raise ConfigurationError(
                    f"cannot create the SQS client ({exc}); set AWS_REGION or sqs://?region=..."
                ) from exc
        self._client = client

    # --- naming and lookups -------------------------------------------------------------------
    def physical_name(self, queue: str) -> str:
        """The SQS queue name: prefix + name; FIFO dead-letter queues keep ``.fifo`` last."""
        name = self.prefix + queue
        fifo_dlq = FIFO_SUFFIX + DEAD_LETTER_SUFFIX
        if name.endswith(fifo_dlq):  # "jobs.fifo-dlq" -> "jobs-dlq.fifo": SQS's FIFO naming rule
            name = name[: -len(fifo_dlq)] + DEAD_LETTER_SUFFIX + FIFO_SUFFIX
        self._check_name(name)
        return name

    def _valid_name(self, name: str) -> bool:
        """SQS's rule holds for the name without its ``.fifo``; the length counts all of it."""
        stem = name.removesuffix(FIFO_SUFFIX)
        return len(name) <= lim.MAX_QUEUE_NAME_CHARS and _QUEUE_NAME.fullmatch(stem) is not None

    def logical_name(self, physical: str) -> str:
        """The cloudq queue name of an SQS queue name (the inverse of ``physical_name``)."""
        name = physical.removeprefix(self.prefix)
        fifo_dlq = DEAD_LETTER_SUFFIX + FIFO_SUFFIX
        if name.endswith(fifo_dlq):
            name = name[: -len(fifo_dlq)] + FIFO_SUFFIX + DEAD_LETTER_SUFFIX
        return name

    @property
    def client(self) -> Any:
        """The boto3 SQS client (for tools that need raw API shapes, like ``lambda-local``)."""
        return self._client

    def queue_url(self, queue: str) -> str:
        """The queue's URL (looked up once, then cached)."""
        return self._url(queue)

    def queue_arn(self, queue: str) -> str:
        response = self._api(
            "get_queue_attributes", queue, QueueUrl=self._url(queue), AttributeNames=["QueueArn"]
        )
        return str(response["Attributes"]["QueueArn"])

    def _is_fifo(self, queue: str) -> bool:
        return is_fifo(self._name(queue))

    def _error(self, operation: str, queue: str, exc: Exception) -> BrokerError | MessageTooLarge:
        code = error_code(exc)
        if code in _NO_SUCH_QUEUE:
            self._urls.pop(queue, None)
            return self._not_found(api_name(operation), f"queue {self._name(queue)!r}")
        if code in _PURGE_IN_PROGRESS:
            return BrokerError(
                f"SQS allows one PurgeQueue per queue every 60 seconds; {self._name(queue)!r} was "
                "purged less than a minute ago (a purge can also take up to 60 s to finish)"
            )
        return super()._error(api_name(operation), queue, exc)

    def _api(self, operation: str, queue: str, **params: Any) -> dict[str, Any]:
        """One SQS API call (the boto3 method ``operation``), through the skeleton's ``_call``."""
        method = getattr(self._client, operation)
        response: dict[str, Any] = self._call(operation, queue, lambda: method(**params))
        return response

    def _url(self, queue: str) -> str:
        url = self._urls.get(queue)
        if url is None:
            name = self.physical_name(queue)
            url = str(self._api("get_queue_url", queue, QueueName=name)["QueueUrl"])
            self._urls[queue] = url
        return url

    def _max_bytes(self, queue: str) -> int:
        """The queue's MaximumMessageSize (read once), or the classic default if unreadable."""
        size = self._sizes.get(queue)
        if size is None:
            url = self._url(queue)
            try:
                attributes = self._api(
                    "get_queue_attributes",
                    queue,
                    QueueUrl=url,
                    AttributeNames=["MaximumMessageSize"],
                ).get("Attributes", {})
            except QueueNotFoundError:
                raise
            except BrokerError as exc:  # e.g. a least-privilege role without GetQueueAttributes
                logger.info(
                    "cannot read MaximumMessageSize of %r (%s); assuming 256 KiB", queue, exc
                )
                return self._cap(lim.DEFAULT_MAX_MESSAGE_BYTES)
            size = int(attributes.get("MaximumMessageSize", lim.DEFAULT_MAX_MESSAGE_BYTES))
            self._sizes[queue] = size
            if self._configured_max_bytes is None:
                self.limits = replace(self.limits, max_message_bytes=min(self._sizes.values()))
        return self._cap(size)

    def _cap(self, size: int) -> int:
        return min(size, self._configured_max_bytes or size)

    # --- the contract ---------------------------------------------------------------------------
    def ensure(self, spec: QueueSpec) -> None:
        fifo = spec.fifo or is_fifo(spec.name)
        if fifo and not is_fifo(spec.name):
            raise ConfigurationError(f"SQS FIFO queue names end in '.fifo': got {spec.name!r}")
        extra = {"FifoQueue": "true"} if fifo else {}
        dlq = dead_letter_queue_name(spec.name)
        self._create(
            dlq, {**extra, "MessageRetentionPeriod": str(lim.DEAD_LETTER_RETENTION_SECONDS)}
        )
        arn = self._api(
            "get_queue_attributes", dlq, QueueUrl=self._url(dlq), AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        redrive = {"deadLetterTargetArn": arn, "maxReceiveCount": str(spec.max_receive_count)}
        self._create(
            spec.name,
            {
                **extra,
                "VisibilityTimeout": str(_seconds(spec.lease_seconds, lim.MAX_VISIBILITY_SECONDS)),
                "RedrivePolicy": json.dumps(redrive),
            },
        )

    def _create(self, queue: str, attributes: dict[str, str]) -> None:
        """CreateQueue; if it exists with other attributes, bring those up to date instead."""
        name = self.physical_name(queue)
        try:
            url = self._client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except self._errors as exc:
            if error_code(exc) not in _QUEUE_EXISTS:
                raise self._error("create_queue", queue, exc) from exc
            url = self._url(queue)
            changeable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
            self._api("set_queue_attributes", queue, QueueUrl=url, Attributes=changeable)
            logger.info("updated the attributes of SQS queue %r to %s", name, changeable)
        self._urls[queue] = str(url)

    def _check_message(self, queue: str, m: OutgoingMessage) -> None:
        """SQS's rules: no per-message delay on a FIFO queue, attributes SQS takes (the size
        counts the encoded body and attributes: ``_entry`` checks it)."""
        if m.delay_seconds > 0 and self._is_fifo(queue):
            raise ConfigurationError(
                f"SQS FIFO queue {queue!r} takes no per-message delay (got {m.delay_seconds}s); "
                "set DelaySeconds on the queue or send without a delay"
            )
        _check_attributes(m.attributes)

    def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        max_bytes = self._max_bytes(queue)
        # Every message is checked before the first is sent: a bad one sends nothing.
        entries = [self._entry(queue, str(i), m, max_bytes) for i, m in enumerate(messages)]
        url = self._url(queue)
        if len(entries) == 1:
            # One message (``delay()``): SendMessage, as a hand-written loop would. A batch of one
            # costs more CPU on both ends for the same result; failures raise BrokerError.
            entry = {k: v for k, v in entries[0][0].items() if k != "Id"}
            self._api("send_message", queue, QueueUrl=url, **entry)
            return
        # One batch may carry the service maximum in total; a queue allowing 1 MiB messages is on
        # the post-2025 service, which takes 1 MiB batches too.
        batch_bytes = max(lim.DEFAULT_MAX_MESSAGE_BYTES, max_bytes)
        failures: dict[str, str] = {}
        chunk: list[dict[str, Any]] = []
        chunk_bytes = 0
        for entry, size in entries:
            if chunk and chunk_bytes + size > batch_bytes:
                failures.update(self._send_batch(queue, url, chunk))
                chunk, chunk_bytes = [], 0
            chunk.append(entry)
            chunk_bytes += size
        failures.update(self._send_batch(queue, url, chunk))
        if failures:
            failed = {int(entry_id): reason for entry_id, reason in failures.items()}
            raise PartialSendError(
                f"SQS SendMessageBatch on queue {self._name(queue)!r}: {len(failed)} of "
                f"{len(messages)} messages not sent (the others were): {failed}",
                failed,
            )

    def _send_batch(self, queue: str, url: str, entries: list[dict[str, Any]]) -> dict[str, str]:
        def call(batch: list[dict[str, Any]]) -> dict[str, Any]:
            return self._api("send_message_batch", queue, QueueUrl=url, Entries=batch)

        return send_with_retries(call, entries)

    def _entry(
        self, queue: str, entry_id: str, m: OutgoingMessage, max_bytes: int
    ) -> tuple[dict[str, Any], int]:
        """A SendMessageBatch entry and its size, which must fit the queue's ``max_bytes``."""
        fifo = self._is_fifo(queue)
        body, encoded = encode_body(m.body)
        attributes = dict(m.attributes)
        if m.message_id:
            attributes[MESSAGE_ID_ATTRIBUTE] = m.message_id
        if encoded:
            attributes[ENCODING_ATTRIBUTE] = "base64"
        size = wire_size(body, attributes)
        if size > max_bytes:
            raise self._too_large(queue, size, max_bytes, "body and attributes")
        entry: dict[str, Any] = {
            "Id": entry_id,
            "MessageBody": body,
            "MessageAttributes": {
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
            },
        }
        if fifo:
            entry["MessageGroupId"] = fifo_token(m.group or "default")
            entry["MessageDeduplicationId"] = fifo_token(m.message_id or uuid.uuid4().hex)
        else:
            entry["DelaySeconds"] = _seconds(
                m.delay_seconds, int(self.limits.max_delay_seconds or 0)
            )
        return entry, size

    def receive(
        self, queue: str, max_messages: int, wait_seconds: float, lease_seconds: float
    ) -> list[Delivery]:
        if max_messages <= 0:
            return []
        url = self._url(queue)
        started = self._clock.monotonic()
        response = self._api(
            "receive_message",
            queue,
            QueueUrl=url,
            MaxNumberOfMessages=min(max_messages, lim.MAX_BATCH),
            WaitTimeSeconds=_seconds(wait_seconds, lim.MAX_WAIT_SECONDS),
            VisibilityTimeout=_seconds(lease_seconds, lim.MAX_VISIBILITY_SECONDS),
            AttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
            MessageAttributeNames=["All"],
        )
        deliveries = []
        for message in response.get("Messages", []):
            attributes = _string_attributes(message)
            deliveries.append(
                Delivery(
                    queue=queue,
                    body=decode_body(message["Body"], attributes),
                    message_id=attributes.get(MESSAGE_ID_ATTRIBUTE) or message["MessageId"],
                    receive_count=int(
                        message.get("Attributes", {}).get("ApproximateReceiveCount", 1)
                    ),
                    handle=message["ReceiptHandle"],
                    attributes={k: v for k, v in attributes.items() if k not in _HIDDEN_ATTRIBUTES},
                    leased_until=started + lease_seconds,
                    group=message.get("Attributes", {}).get("MessageGroupId"),
                )
            )
        return deliveries

    def _by_queue(self, deliveries: Sequence[Delivery]) -> dict[str, list[Delivery]]:
        """Deliveries per queue, each receipt handle once (SQS rejects repeats in a batch)."""
        grouped: dict[str, dict[Any, Delivery]] = {}
        for d in deliveries:
            grouped.setdefault(d.queue, {}).setdefault(d.handle, d)
        return {queue: list(by_handle.values()) for queue, by_handle in grouped.items()}

    def _handle_batches(
        self, operation: str, deliveries: Sequence[Delivery], **fields: Any
    ) -> list[Delivery]:
        """Run a Delete/ChangeMessageVisibility batch per queue and chunk; return the successes.

        Entries that failed on the service's side are retried once. The rest are logged, not
        raised: a failed entry is nearly always an expired receipt handle, meaning the message is
        visible again and will be redelivered (at-least-once), which raising would not change.
        """
        done: list[Delivery] = []
        for queue, group in self._by_queue(deliveries).items():
            url = self._url(queue)
            for chunk in _chunks(group, lim.MAX_BATCH):
                pending = {str(i): d for i, d in enumerate(chunk)}
                for attempt in (1, 2):
                    entries = [
                        {"Id": i, "ReceiptHandle": d.handle, **fields} for i, d in pending.items()
                    ]
                    response = self._api(operation, queue, QueueUrl=url, Entries=entries)
                    done.extend(pending[ok["Id"]] for ok in response.get("Successful", []))
                    retry: dict[str, Delivery] = {}
                    for f in response.get("Failed", []):
                        if attempt == 1 and not f.get("SenderFault"):
                            retry[f["Id"]] = pending[f["Id"]]
                            continue
                        logger.warning(
                            "SQS %s on %r: message %s not handled (%s: %s); it will be "
                            "redelivered when its visibility timeout ends",
                            api_name(operation),
                            self._name(queue),
                            pending[f["Id"]].message_id,
                            f.get("Code"),
                            f.get("Message"),
                        )
                    if not retry:
                        break
                    pending = retry
        return done

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._handle_batches("delete_message_batch", deliveries)

    def release(self, deliveries: Sequence[Delivery], delay_seconds: float = 0.0) -> None:
        timeout = _seconds(delay_seconds, lim.MAX_VISIBILITY_SECONDS)
        self._handle_batches(
            "change_message_visibility_batch", deliveries, VisibilityTimeout=timeout
        )

    def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        now = self._clock.monotonic()
        timeout = _seconds(seconds, lim.MAX_VISIBILITY_SECONDS)
        for d in self._handle_batches(
            "change_message_visibility_batch", deliveries, VisibilityTimeout=timeout
        ):
            d.leased_until = now + seconds

    def _dead_letter_wire(
        self, delivery: Delivery, body: bytes, attributes: dict[str, str]
    ) -> tuple[str, dict[str, str]]:
        """A dead letter's SQS body and attributes (the message id kept, the encoding said)."""
        text, encoded = encode_body(body)
        attributes = dict(attributes)
        if delivery.message_id:
            attributes[MESSAGE_ID_ATTRIBUTE] = delivery.message_id
        if encoded:
            attributes[ENCODING_ATTRIBUTE] = "base64"
        return text, attributes

    def _clean_reason(self, reason: str) -> str:
        return _NOT_XML_CHAR.sub("?", reason)

    def _reason_room(
        self, delivery: Delivery, dlq: str, body: bytes, attributes: dict[str, str]
    ) -> int:
        """What the dead-letter queue's size limit leaves for the reason."""
        text, wire = self._dead_letter_wire(delivery, body, attributes)
        max_bytes = self._max_bytes(dlq)
        room = max_bytes - wire_size(text, {**wire, REASON_ATTRIBUTE: ""})
        if room < 1:
            raise MessageTooLarge(
                f"dead letter of {delivery.message_id} exceeds the {max_bytes} bytes SQS queue "
                f"{self._name(dlq)!r} accepts"
            )
        return room

    def _send_dead_letter(
        self, delivery: Delivery, dlq: str, body: bytes, attributes: dict[str, str]
    ) -> None:
        text, wire = self._dead_letter_wire(delivery, body, attributes)
        params: dict[str, Any] = {
            "QueueUrl": self._url(dlq),
            "MessageBody": text,
            "MessageAttributes": {
                k: {"DataType": "String", "StringValue": v} for k, v in wire.items()
            },
        }
        if self._is_fifo(dlq):
            params["MessageGroupId"] = DEAD_LETTER_GROUP
            params["MessageDeduplicationId"] = fifo_token(delivery.message_id)
        self._api("send_message", dlq, **params)

    def stats(self, queue: str) -> QueueStats:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        counts = self._api(
            "get_queue_attributes", queue, QueueUrl=self._url(queue), AttributeNames=names
        ).get("Attributes", {})
        dlq = dead_letter_queue_name(queue)
        dead: int | None
        try:
            dlq_counts = self._api(
                "get_queue_attributes", dlq, QueueUrl=self._url(dlq), AttributeNames=names
            ).get("Attributes", {})
            dead = sum(int(dlq_counts.get(n, 0)) for n in names)
        except QueueNotFoundError:  # made outside cloudq with another dead-letter queue, or none
            dead = None
        return QueueStats(
            queue=queue,
            visible=int(counts.get(names[0], 0)),
            in_flight=int(counts.get(names[1], 0)),
            delayed=int(counts.get(names[2], 0)),
            dead_lettered=dead,
        )

    def purge(self, queue: str) -> None:
        """PurgeQueue: SQS allows one per queue per 60 s and may take that long to finish."""
        self._api("purge_queue", queue, QueueUrl=self._url(queue))

    def close(self) -> None:
        self._client.close()


def open_sqs_broker(url: str, clock: Clock) -> SQSBroker:
    """The ``cloudq.adapters`` entry point for ``sqs://?OPTIONS`` (no host part).

    :param url: options ``region``, ``prefix`` (of every queue name; default
        ``CLOUDQ_SQS_PREFIX``), ``endpoint_url`` (moto, LocalStack), ``max_message_bytes``
        (up to the service's 1 MiB), ``max_delay_seconds`` (below SQS's 900); credentials,
        region and endpoint otherwise come from the AWS environment.
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    _, options = broker_url(
        url,
        _URL_OPTIONS,
        usage="sqs://?OPTIONS (options only, e.g. sqs://?region=eu-west-1&prefix=myapp-)",
        credentials="credentials, region and endpoint come from the AWS environment",
        host=False,
    )
    return SQSBroker(
        clock,
        region=options.get("region"),
        prefix=options.get("prefix", os.environ.get("CLOUDQ_SQS_PREFIX", "")),
        endpoint_url=options.get("endpoint_url"),
        max_message_bytes=url_count(options, "max_message_bytes", url),
        max_delay_seconds=url_count(options, "max_delay_seconds", url),
    )
