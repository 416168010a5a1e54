"""``pubsub://PROJECT``: cloudq's adapter for Google Cloud Pub/Sub.

A cloudq queue ``jobs`` is the topic ``PREFIX + jobs`` plus the subscription of the same id,
with dead-letter topic and subscription ``PREFIX + jobs-dlq``. Configuration follows Google's
conventions: ``PUBSUB_EMULATOR_HOST`` selects the emulator, credentials come from Application
Default Credentials, the project from the URL's host or ``GOOGLE_CLOUD_PROJECT``. The URL adds
``prefix=`` (or ``CLOUDQ_PUBSUB_PREFIX``), ``max_batch=`` (1..1000, default 10), ``endpoint=``
(e.g. a regional endpoint, which ordering keys want), ``timeout=`` (seconds per call) and
``max_lease_seconds=`` (lower the 600 s lease cap, e.g. to see holds and hops in tests).

Receiving is synchronous Pull of at most ``max_batch`` messages: the worker asks for exactly the
slots it has free and keeps leases itself. Streaming pull would hand the client library's
flow control and lease management the messages the worker has not asked for, and each of them
would count as delivered (toward ``max_delivery_attempts``) while it waits in a buffer.

Pub/Sub has no native delay (``limits.max_delay_seconds == 0``): the core holds a message that
is not yet due with ``release(delay)`` (ModifyAckDeadline, at most 600 s) once, then re-sends it
fresh, so a long eta never piles up delivery attempts (see README.md).

The google SDK is imported when a broker is opened, never when ``cloudq`` is.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cloudq.adapters.base import (
    AsyncSender,
    BrokerLimits,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    QueueStats,
    dead_letter_queue_name,
)
from cloudq.adapters.skeleton import BrokerBase, PartialSendError, QueueNotFoundError
from cloudq.adapters.urls import broker_url, env_setting, redact_url, url_count, url_number
from cloudq.adapters.wire import DEAD_LETTER_REASON_ATTRIBUTE as REASON_ATTRIBUTE
from cloudq.adapters.wire import MAX_RECEIVE_COUNT_REASON, MESSAGE_ID_ATTRIBUTE, is_fifo
from cloudq.clock import Clock
from cloudq.errors import BrokerError, ConfigurationError, MessageTooLarge
from cloudq.logsafe import get_logger
from cloudq_pubsub import limits as lim

__all__ = [
    "MESSAGE_ID_ATTRIBUTE",
    "REASON_ATTRIBUTE",
    "PartialSendError",
    "PubSubBroker",
    "QueueNotFoundError",
    "open_pubsub_broker",
]

logger = get_logger("cloudq.pubsub")

_HIDDEN_ATTRIBUTES = frozenset({MESSAGE_ID_ATTRIBUTE})
MAX_RECEIVE_COUNT_LABEL = "cloudq-max-receive-count"
"""Subscription label keeping cloudq's own limit, which may be below Pub/Sub's minimum of 5."""
DEFAULT_ORDERING_KEY = "default"
"""Ordering key of a message sent to a FIFO queue without a group."""

_URL_OPTIONS = frozenset({"prefix", "max_batch", "endpoint", "timeout", "max_lease_seconds"})
_RESOURCE_ID = re.compile(r"[A-Za-z][-A-Za-z0-9_.~+%]*")

T = TypeVar("T")
EMULATOR_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
"""The emulator channel the SDK makes keeps gRPC's 4 MiB receive limit; Pub/Sub's messages go
up to 10 MiB (the sync and the async clients' channels alike)."""


@dataclass(frozen=True)
class _SubscriptionInfo:
    """What receive needs to know about a subscription, read once per queue."""

    ack_deadline_seconds: int
    max_receive_count: int | None


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ack_seconds(value: float) -> int:
    """Whole seconds for ModifyAckDeadline, rounded up (never shorter than asked), 0..600."""
    return min(lim.MAX_ACK_DEADLINE_SECONDS, max(0, math.ceil(value)))


def subscription_ack_deadline(lease_seconds: float) -> int:
    """A subscription's ack deadline for a lease: rounded up, within Pub/Sub's 10..600 s."""
    return max(lim.MIN_SUBSCRIPTION_ACK_DEADLINE_SECONDS, ack_seconds(lease_seconds))


def service_max_delivery_attempts(max_receive_count: int) -> int:
    """The dead-letter policy's value: cloudq's count within Pub/Sub's 5..100.

    Below 5 the adapter enforces the count itself on receive; the policy stays the safety net.
    """
    return min(lim.MAX_DELIVERY_ATTEMPTS, max(lim.MIN_DELIVERY_ATTEMPTS, max_receive_count))


def check_attributes(attributes: dict[str, str]) -> None:
    """Reject attribute keys and values Pub/Sub would refuse, before anything is sent."""
    for key, value in attributes.items():
        if not key or len(key.encode()) > lim.MAX_ATTRIBUTE_KEY_BYTES or key.startswith("goog"):
            raise ConfigurationError(
                f"{key!r} is not a valid Pub/Sub attribute key: 1 to "
                f"{lim.MAX_ATTRIBUTE_KEY_BYTES} bytes, not starting with 'goog'"
            )
        if len(value.encode()) > lim.MAX_ATTRIBUTE_VALUE_BYTES:
            raise ConfigurationError(
                f"Pub/Sub attribute {key!r} is {len(value.encode())} bytes, over the "
                f"{lim.MAX_ATTRIBUTE_VALUE_BYTES} a value may have"
            )


class PubSubBroker(BrokerBase):
    """Two GAPIC clients (publisher, subscriber) and a cache of subscription settings.

    Thread-safe like the clients; nothing here starts a background thread.
    """

    provider = "Pub/Sub"
    reason_max_bytes = lim.MAX_ATTRIBUTE_VALUE_BYTES
    max_attributes = lim.MAX_ATTRIBUTES
    reserved_attributes = lim.RESERVED_ATTRIBUTES
    name_pattern = _RESOURCE_ID
    max_name_chars = lim.MAX_ID_CHARS
    name_rule = (
        f"a topic/subscription id of {lim.MIN_ID_CHARS} to {lim.MAX_ID_CHARS} letters, digits "
        "and -_.~+% (prefix included), starting with a letter and not with 'goog'"
    )

    def __init__(
        self,
        clock: Clock,
        project: str,
        *,
        prefix: str = "",
        max_batch: int = lim.DEFAULT_MAX_BATCH,
        endpoint: str | None = None,
        timeout: float = lim.DEFAULT_TIMEOUT_SECONDS,
        max_lease_seconds: int | None = None,
        publisher: Any = None,
        subscriber: Any = None,
    ) -> None:
        from google.api_core import exceptions as gexc
        from google.api_core import retry as gretry
        from google.pubsub_v1 import types

        if not 1 <= max_batch <= lim.MAX_PULL_MESSAGES:
            raise ConfigurationError(
                f"pubsub:// max_batch must be 1..{lim.MAX_PULL_MESSAGES}, got {max_batch}"
            )
        self._gexc = gexc
        # Messages are built as plain protobuf (a proto-plus one costs ~6x as much to build).
        self._message_pb: Any = types.PubsubMessage.pb()
        self._request_type: Any = types.PublishRequest
        self._errors: tuple[type[Exception], ...] = (gexc.GoogleAPIError,)
        self._clock = clock
        self.project = project
        self.prefix = prefix
        self.timeout = timeout
        self.limits = BrokerLimits(
            max_delay_seconds=0,
            max_lease_seconds=min(
                max_lease_seconds or lim.MAX_ACK_DEADLINE_SECONDS, lim.MAX_ACK_DEADLINE_SECONDS
            ),
            max_message_bytes=lim.MAX_MESSAGE_BYTES - lim.RESERVED_ATTRIBUTE_BYTES,
            max_batch=max_batch,
            long_poll_returns_at_once=True,  # a Pull answers as soon as a message is there
        )
        # Transient failures are retried within the call's timeout; then the caller gets a
        # BrokerError (a producer raises, a worker backs off). A retried publish may duplicate.
        self._retry_settings: dict[str, Any] = dict(
            predicate=gretry.if_exception_type(
                gexc.ServiceUnavailable,
                gexc.InternalServerError,
                gexc.Aborted,
                gexc.DeadlineExceeded,
                gexc.Unknown,
            ),
            initial=0.1,
            maximum=2.0,
            multiplier=2.0,
            timeout=timeout,
        )
        self._retry = gretry.Retry(**self._retry_settings)
        self._subscriptions: dict[str, _SubscriptionInfo] = {}
        self._endpoint = endpoint
        self._own_clients = publisher is None or subscriber is None
        """Clients made here (the async publisher is made the same way); given ones have no
        async twin, and async sends then take ``cloudq.aio``'s threads."""
        if publisher is None or subscriber is None:
            publisher, subscriber = _make_clients(endpoint)
        self._publisher = publisher
        self._subscriber = subscriber

    def open_async_sender(self) -> AsyncSender | None:
        """A ``PublisherAsyncClient`` sender for the running loop (``cloudq.aio``), or ``None``
        for a broker given its clients (``cloudq_pubsub.aio_publisher``)."""
        if not self._own_clients:
            return None
        from cloudq_pubsub.aio_publisher import PubSubAsyncSender

        return PubSubAsyncSender(self, self._endpoint, self._retry_settings)

    def __repr__(self) -> str:
        return f"PubSubBroker(project={self.project!r}, prefix={self.prefix!r})"

    # --- naming ---------------------------------------------------------------------------------
    def _valid_name(self, name: str) -> bool:
        """Pub/Sub's rule for topic and subscription ids (the queue's physical name)."""
        return (
            super()._valid_name(name)
            and len(name) >= lim.MIN_ID_CHARS
            and not name.lower().startswith("goog")
        )

    def logical_name(self, physical: str) -> str:
        """The cloudq queue of a topic or subscription id (or full path)."""
        return physical.rsplit("/", 1)[-1].removeprefix(self.prefix)

    def topic_path(self, queue: str) -> str:
        return f"projects/{self.project}/topics/{self.physical_name(queue)}"

    def subscription_path(self, queue: str) -> str:
        return f"projects/{self.project}/subscriptions/{self.physical_name(queue)}"

    @property
    def publisher(self) -> Any:
        """The GAPIC publisher client (for tools that need the raw API)."""
        return self._publisher

    @property
    def subscriber(self) -> Any:
        """The GAPIC subscriber client (for tools that need the raw API)."""
        return self._subscriber

    # --- errors -----------------------------------------------------------------------------
    def _error(self, operation: str, resource: str, exc: Exception) -> BrokerError:
        """``resource`` is the topic or subscription path (what ``_api`` names)."""
        if isinstance(exc, self._gexc.NotFound):
            return self._not_found(operation, resource, str(exc.message))
        return BrokerError(f"Pub/Sub {operation} on {resource} failed: {exc}")

    def _api(self, operation: str, resource: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """One API call with retries, through the skeleton's ``_call``; errors name ``resource``."""
        kwargs.setdefault("retry", self._retry)
        kwargs.setdefault("timeout", self.timeout)
        return self._call(operation, resource, lambda: fn(**kwargs))

    def _publish(self, topic: str, messages: list[Any]) -> None:
        """One Publish of plain protobuf messages (``_request``)."""
        self._api("Publish", topic, self._publisher.publish, request=self._request(topic, messages))

    # --- ensure ---------------------------------------------------------------------------------
    def ensure(self, spec: QueueSpec) -> None:
        """Topic + subscription for the queue and for its dead-letter queue (idempotent).

        The dead-letter subscription keeps dead letters 7 days; neither subscription expires
        when idle. An existing subscription gets its ack deadline, dead-letter policy and
        labels brought up to date; message ordering cannot change after creation (logged).
        """
        fifo = is_fifo(spec.name)
        dlq = dead_letter_queue_name(spec.name)
        self._create_topic(dlq)
        self._create_subscription(
            dlq,
            {
                "message_retention_duration": {"seconds": lim.MESSAGE_RETENTION_SECONDS},
                "expiration_policy": {},
            },
        )
        self._create_topic(spec.name)
        count = spec.max_receive_count
        settings: dict[str, Any] = {
            "ack_deadline_seconds": subscription_ack_deadline(spec.lease_seconds),
            "dead_letter_policy": {
                "dead_letter_topic": self.topic_path(dlq),
                "max_delivery_attempts": service_max_delivery_attempts(count),
            },
            "expiration_policy": {},
            "labels": {MAX_RECEIVE_COUNT_LABEL: str(count)},
        }
        if fifo:
            settings["enable_message_ordering"] = True
        self._create_subscription(spec.name, settings)
        self._subscriptions[spec.name] = _SubscriptionInfo(settings["ack_deadline_seconds"], count)

    def _create_topic(self, queue: str) -> None:
        path = self.topic_path(queue)
        try:
            self._publisher.create_topic(name=path, retry=self._retry, timeout=self.timeout)
            logger.info("created Pub/Sub topic %s", path)
        except self._gexc.AlreadyExists:
            pass
        except self._errors as exc:
            raise self._error("CreateTopic", path, exc) from exc

    def _create_subscription(self, queue: str, settings: dict[str, Any]) -> None:
        path = self.subscription_path(queue)
        request = {"name": path, "topic": self.topic_path(queue), **settings}
        try:
            self._subscriber.create_subscription(
                request=request, retry=self._retry, timeout=self.timeout
            )
            logger.info("created Pub/Sub subscription %s", path)
            return
        except self._gexc.AlreadyExists:
            pass
        except self._errors as exc:
            raise self._error("CreateSubscription", path, exc) from exc
        self._update_subscription(path, settings)

    def _update_subscription(self, path: str, settings: dict[str, Any]) -> None:
        current = self._api(
            "GetSubscription", path, self._subscriber.get_subscription, subscription=path
        )
        changed: dict[str, Any] = {}
        deadline = settings.get("ack_deadline_seconds")
        if deadline is not None and current.ack_deadline_seconds != deadline:
            changed["ack_deadline_seconds"] = deadline
        policy = settings.get("dead_letter_policy")
        if policy is not None and (
            current.dead_letter_policy.dead_letter_topic != policy["dead_letter_topic"]
            or current.dead_letter_policy.max_delivery_attempts != policy["max_delivery_attempts"]
        ):
            changed["dead_letter_policy"] = policy
        labels = settings.get("labels")
        if labels is not None and any(current.labels.get(k) != v for k, v in labels.items()):
            changed["labels"] = {**dict(current.labels), **labels}
        ordered = bool(settings.get("enable_message_ordering"))
        if ordered != current.enable_message_ordering:
            logger.warning(
                "Pub/Sub subscription %s has message ordering %s and it cannot be changed: "
                "delete the subscription to recreate it",
                path,
                "on" if current.enable_message_ordering else "off",
            )
        labels_changed = changed.pop("labels", None)
        if changed:
            self._api(
                "UpdateSubscription",
                path,
                self._subscriber.update_subscription,
                request={
                    "subscription": {"name": path, **changed},
                    "update_mask": {"paths": sorted(changed)},
                },
            )
            logger.info("updated Pub/Sub subscription %s: %s", path, sorted(changed))
        if labels_changed is not None:
            try:
                self._api(
                    "UpdateSubscription",
                    path,
                    self._subscriber.update_subscription,
                    request={
                        "subscription": {"name": path, "labels": labels_changed},
                        "update_mask": {"paths": ["labels"]},
                    },
                )
            except BrokerError as exc:
                if not isinstance(exc.__cause__, self._gexc.InvalidArgument):
                    raise
                # The emulator cannot update labels; this process still knows the new count.
                logger.warning("could not update the labels of %s: %s", path, exc)

    def _info(self, queue: str) -> _SubscriptionInfo:
        """The subscription's ack deadline and cloudq receive limit (read once, then cached)."""
        info = self._subscriptions.get(queue)
        if info is None:
            path = self.subscription_path(queue)
            sub = self._api(
                "GetSubscription", path, self._subscriber.get_subscription, subscription=path
            )
            label = sub.labels.get(MAX_RECEIVE_COUNT_LABEL, "")
            count: int | None = int(label) if label.isdigit() else None
            if count is None and sub.dead_letter_policy.max_delivery_attempts:
                count = int(sub.dead_letter_policy.max_delivery_attempts)
            info = _SubscriptionInfo(int(sub.ack_deadline_seconds), count)
            self._subscriptions[queue] = info
        return info

    # --- send -----------------------------------------------------------------------------------
    def _ordering_key(self, queue: str, m: OutgoingMessage) -> str:
        return (m.group or DEFAULT_ORDERING_KEY) if is_fifo(queue) else ""

    def _check_message(self, queue: str, m: OutgoingMessage) -> None:
        """Pub/Sub's rules: attribute keys and values, the ordering key's length (the size
        counts data, attributes and key: ``_send`` checks it on the built message)."""
        check_attributes(m.attributes)
        key = self._ordering_key(queue, m)
        if len(key.encode()) > lim.MAX_ORDERING_KEY_BYTES:
            raise ConfigurationError(
                f"ordering key {key[:40]!r}... is over {lim.MAX_ORDERING_KEY_BYTES} bytes"
            )

    def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Publish, split into requests of at most 1000 messages and 10 MiB.

        Every message is built and sized before the first is sent; a bad one sends nothing.
        """
        topic, built = self._build(queue, messages)
        sent = 0
        for request in self._requests(built):
            try:
                self._publish(topic, request)
            except BrokerError as exc:
                if not sent:
                    raise
                raise self._partial(topic, sent, len(built), exc) from exc
            sent += len(request)

    def _build(self, queue: str, messages: Sequence[OutgoingMessage]) -> tuple[str, list[Any]]:
        """The topic and each message as protobuf with its size (sync and async publish alike):
        the ordering key of its group on a FIFO queue, the task id as an attribute."""
        topic = self.topic_path(queue)
        built: list[tuple[Any, int]] = []
        for m in messages:
            attributes = dict(m.attributes)
            if m.message_id:
                attributes[MESSAGE_ID_ATTRIBUTE] = m.message_id
            key = self._ordering_key(queue, m)
            message = self._message_pb(data=m.body, attributes=attributes, ordering_key=key)
            size = message.ByteSize()
            if size > lim.MAX_MESSAGE_BYTES:
                raise self._too_large(
                    queue, size, lim.MAX_MESSAGE_BYTES, "data, attributes, ordering key"
                )
            built.append((message, size))
        return topic, built

    def _request(self, topic: str, messages: list[Any]) -> Any:
        """A PublishRequest wrapping plain protobuf messages without a copy.

        The flattened ``publish(topic=, messages=)`` builds a proto-plus request field by
        field, converting each message: a third of the client's own CPU for a single message.
        """
        return self._request_type.wrap(self._request_type.pb()(topic=topic, messages=messages))

    @staticmethod
    def _partial(topic: str, sent: int, total: int, exc: BrokerError) -> PartialSendError:
        """A request failed after the first ``sent`` messages went out: which were not."""
        failed = {i: str(exc) for i in range(sent, total)}
        return PartialSendError(
            f"Pub/Sub Publish on {topic}: {len(failed)} of {total} messages not sent (the "
            f"first {sent} were): {exc}",
            failed,
        )

    @staticmethod
    def _requests(built: list[tuple[Any, int]]) -> Iterator[list[Any]]:
        """Publish requests in order, each within Pub/Sub's message count and byte limits."""
        request: list[Any] = []
        size = 0
        overhead = 512  # topic name and framing of the request
        for message, message_size in built:
            framed = message_size + 8
            if request and (
                size + framed + overhead > lim.MAX_PUBLISH_REQUEST_BYTES
                or len(request) >= lim.MAX_PUBLISH_BATCH
            ):
                yield request
                request, size = [], 0
            request.append(message)
            size += framed
        if request:
            yield request

    # --- receive --------------------------------------------------------------------------------
    def receive(
        self, queue: str, max_messages: int, wait_seconds: float, lease_seconds: float
    ) -> list[Delivery]:
        """One synchronous Pull of up to ``max_messages`` (at most ``max_batch``).

        Messages delivered more often than the queue's ``max_receive_count`` are moved to the
        dead-letter queue here, as SQS does on the extra receive (Pub/Sub's own policy cannot go
        below 5 attempts). Each message is then leased for ``lease_seconds`` (ModifyAckDeadline,
        skipped when it equals the subscription's ack deadline).
        """
        count = min(max_messages, self.limits.max_batch)
        if count <= 0:
            return []
        path = self.subscription_path(queue)
        info = self._info(queue)
        started = self._clock.monotonic()
        # No return_immediately (deprecated): a short deadline is the "just look" poll.
        deadline = max(0.0, wait_seconds) + lim.PULL_DEADLINE_MARGIN_SECONDS
        try:
            response = self._subscriber.pull(
                request={"subscription": path, "max_messages": count},
                timeout=deadline,
                retry=None,
            )
        except self._gexc.DeadlineExceeded:
            return []
        except self._errors as exc:
            raise self._error("Pull", path, exc) from exc
        deliveries: list[Delivery] = []
        # The plain protobuf under the proto-plus wrapper: its fields read several times faster
        # (proto-plus converts on every attribute access), half the cost of a receive here.
        raw = type(response).pb(response)
        for received in raw.received_messages:
            message = received.message
            attributes = dict(message.attributes)
            delivery = Delivery(
                queue=queue,
                body=bytes(message.data),
                message_id=attributes.get(MESSAGE_ID_ATTRIBUTE) or message.message_id,
                # Only set where the subscription has a dead-letter policy (ensure gives one).
                receive_count=max(1, int(received.delivery_attempt)),
                handle=received.ack_id,
                attributes={k: v for k, v in attributes.items() if k not in _HIDDEN_ATTRIBUTES},
                leased_until=started + info.ack_deadline_seconds,
                group=message.ordering_key or None,
            )
            limit = info.max_receive_count
            if limit is not None and delivery.receive_count > limit:
                logger.warning(
                    "message %s on %s delivered %d times, over max_receive_count %d: dead-lettered",
                    delivery.message_id,
                    queue,
                    delivery.receive_count,
                    limit,
                )
                self.dead_letter(delivery, MAX_RECEIVE_COUNT_REASON)
                continue
            deliveries.append(delivery)
        if deliveries and ack_seconds(lease_seconds) != info.ack_deadline_seconds:
            self.extend(deliveries, lease_seconds)
        return deliveries

    # --- settle ---------------------------------------------------------------------------------
    def _ack_ids(self, deliveries: Sequence[Delivery]) -> dict[str, list[Delivery]]:
        """Deliveries with an ack id, per queue; push deliveries (no ack id) are left out:
        the HTTP response acknowledges those."""
        grouped: dict[str, dict[str, Delivery]] = {}
        for d in deliveries:
            if d.handle:
                grouped.setdefault(d.queue, {}).setdefault(str(d.handle), d)
        return {queue: list(by_id.values()) for queue, by_id in grouped.items()}

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge; an expired ack id is silently ignored by Pub/Sub (the message comes
        back, at-least-once)."""
        for queue, group in self._ack_ids(deliveries).items():
            path = self.subscription_path(queue)
            for chunk in _chunks(group, lim.MAX_ACK_IDS_PER_REQUEST):
                self._api(
                    "Acknowledge",
                    path,
                    self._subscriber.acknowledge,
                    subscription=path,
                    ack_ids=[str(d.handle) for d in chunk],
                )

    def _modify(self, deliveries: Sequence[Delivery], seconds: int) -> list[Delivery]:
        done: list[Delivery] = []
        for queue, group in self._ack_ids(deliveries).items():
            path = self.subscription_path(queue)
            for chunk in _chunks(group, lim.MAX_ACK_IDS_PER_REQUEST):
                self._api(
                    "ModifyAckDeadline",
                    path,
                    self._subscriber.modify_ack_deadline,
                    subscription=path,
                    ack_ids=[str(d.handle) for d in chunk],
                    ack_deadline_seconds=seconds,
                )
                done.extend(chunk)
        return done

    def release(self, deliveries: Sequence[Delivery], delay_seconds: float = 0.0) -> None:
        """ModifyAckDeadline to the delay (0: a nack, visible at once); capped at 600 s.

        Each release counts as a delivery attempt when the message comes back.
        """
        self._modify(deliveries, ack_seconds(delay_seconds))

    def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """ModifyAckDeadline from now; capped at 600 s, so heartbeats must come more often."""
        now = self._clock.monotonic()
        granted = ack_seconds(seconds)
        for d in self._modify(deliveries, granted):
            d.leased_until = now + granted

    def _send_dead_letter(
        self, delivery: Delivery, dlq: str, body: bytes, attributes: dict[str, str]
    ) -> None:
        """Publish the copy to the dead-letter topic (the task id kept as an attribute)."""
        topic = self.topic_path(dlq)
        if delivery.message_id:
            attributes = {**attributes, MESSAGE_ID_ATTRIBUTE: delivery.message_id}
        message = self._message_pb(data=body, attributes=attributes)
        size = message.ByteSize()
        if size > lim.MAX_MESSAGE_BYTES:
            raise MessageTooLarge(
                f"dead letter of {delivery.message_id} is {size} bytes, over the "
                f"{lim.MAX_MESSAGE_BYTES} Pub/Sub accepts on {topic}"
            )
        self._publish(topic, [message])

    # --- inspection -----------------------------------------------------------------------------
    def stats(self, queue: str) -> QueueStats:
        """Pub/Sub's API has no message counts (Cloud Monitoring's backlog metrics lag by
        minutes): every depth is ``None``. Raises ``QueueNotFoundError`` for a missing queue."""
        path = self.subscription_path(queue)
        self._api("GetSubscription", path, self._subscriber.get_subscription, subscription=path)
        return QueueStats(
            queue=queue, visible=None, in_flight=None, delayed=None, dead_lettered=None
        )

    def purge(self, queue: str) -> None:
        """Seek the subscription to now: every message published before is acknowledged.

        The emulator has no Seek; there, the visible messages are pulled and acknowledged
        until none is left (messages in flight then survive the purge).
        """
        path = self.subscription_path(queue)
        now = datetime.now(UTC)
        try:
            self._api(
                "Seek", path, self._subscriber.seek, request={"subscription": path, "time": now}
            )
            return
        except BrokerError as exc:
            if not isinstance(exc.__cause__, self._gexc.MethodNotImplemented):
                raise
        logger.info("Pub/Sub Seek is not implemented here (the emulator): draining %s", path)
        while True:
            batch = self.receive(queue, self.limits.max_batch, 0, lim.MAX_ACK_DEADLINE_SECONDS)
            if not batch:
                return
            self.ack(batch)

    def close(self) -> None:
        for client in (self._publisher, self._subscriber):
            transport = getattr(client, "transport", None)
            if transport is not None:
                transport.close()


def _make_clients(endpoint: str | None) -> tuple[Any, Any]:
    """GAPIC publisher and subscriber: on the emulator over plaintext gRPC, else with
    Application Default Credentials (and ``endpoint`` if given)."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.pubsub_v1 import PublisherClient, SubscriberClient

    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    if emulator and not endpoint:
        import grpc  # type: ignore[import-untyped, unused-ignore]
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        options = EMULATOR_CHANNEL_OPTIONS
        publisher = PublisherClient(
            transport=PublisherGrpcTransport(
                channel=grpc.insecure_channel(emulator, options=options)
            )
        )
        subscriber = SubscriberClient(
            transport=SubscriberGrpcTransport(
                channel=grpc.insecure_channel(emulator, options=options)
            )
        )
        return publisher, subscriber
    client_options = {"api_endpoint": endpoint} if endpoint else None
    try:
        return (
            PublisherClient(client_options=client_options),
            SubscriberClient(client_options=client_options),
        )
    except DefaultCredentialsError as exc:
        raise ConfigurationError(
            f"no Google credentials for Pub/Sub ({exc}): set up Application Default "
            "Credentials, or PUBSUB_EMULATOR_HOST for the emulator"
        ) from exc


def default_project() -> str | None:
    """The project from the environment, as Google's libraries look for it."""
    return env_setting("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "PUBSUB_PROJECT_ID")


def open_pubsub_broker(url: str, clock: Clock) -> PubSubBroker:
    """The ``cloudq.adapters`` entry point for ``pubsub://PROJECT?OPTIONS``.

    :param url: the project as host (default ``GOOGLE_CLOUD_PROJECT``); options ``prefix`` (of
        every topic and subscription; default ``CLOUDQ_PUBSUB_PREFIX``), ``max_batch``
        (messages per pull), ``endpoint`` (the emulator), ``timeout`` (seconds per call),
        ``max_lease_seconds`` (cap on an ack deadline); credentials come from Application
        Default Credentials.
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    host, options = broker_url(
        url,
        _URL_OPTIONS,
        usage="pubsub://PROJECT[?prefix=..]",
        credentials="credentials come from Application Default Credentials",
    )
    project = host or default_project()
    if not project:
        raise ConfigurationError(
            f"{redact_url(url)!r} names no project: use pubsub://PROJECT or set "
            "GOOGLE_CLOUD_PROJECT"
        )
    max_lease = url_number(options, "max_lease_seconds", url)
    return PubSubBroker(
        clock,
        project,
        prefix=options.get("prefix", os.environ.get("CLOUDQ_PUBSUB_PREFIX", "")),
        max_batch=url_count(options, "max_batch", url) or lim.DEFAULT_MAX_BATCH,
        endpoint=options.get("endpoint") or None,
        timeout=url_number(options, "timeout", url) or lim.DEFAULT_TIMEOUT_SECONDS,
        max_lease_seconds=math.ceil(max_lease) if max_lease else None,
    )
