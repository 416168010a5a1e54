"""The Cloud Functions handler: a Pub/Sub CloudEvent through the same ``execute()`` as a worker.

``handler = cloudq_pubsub.cloud_function(app)`` is the function's entry point (a CloudEvent
function, ``functions_framework.cloud_event``). The trigger is a push delivery, acknowledged by
the HTTP response: returning acks, raising makes Pub/Sub redeliver after the subscription's
retry backoff. So each outcome is applied as a worker would, except acknowledging:

- done: return;
- retry: the copy (with ``attempt + 1`` and its eta) is published, then return;
- dead letter: published to the queue's dead-letter topic with the reason, then return;
- deferred (eta in the future): the first delivery is *held* by raising ``DeliveryHeld``, so
  Pub/Sub redelivers it after its retry backoff (at most 600 s); a redelivery still not due is
  re-published fresh (a hop, eta kept) and acknowledged. A long eta thus costs one delivery
  attempt per hop and never reaches ``max_delivery_attempts``, and no instance sleeps on it;
- an outcome that could not be applied (a publish failed): the exception propagates and Pub/Sub
  redelivers the message (at-least-once). A ``BaseException`` out of the task (``SystemExit``...)
  propagates as ``RecordInterrupted``, an ordinary error: the push is nacked, and the
  functions-framework's process is not ended by it.

The queue is the topic named in the event's ``source``
(``//pubsub.googleapis.com/projects/P/topics/PREFIX+QUEUE``); an event from a topic that is not
this broker's (another project or prefix) is not run: it raises ``ForeignQueue``, so
Pub/Sub redelivers it until that subscription's dead-letter policy takes it. An event that is
not a Pub/Sub CloudEvent, or whose message is malformed, raises ``MalformedEvent`` (the rules
are ``cloudq.serverless``'s, the same in every handler). Pub/Sub's delivery
attempt is used where the event carries it (``deliveryAttempt``); Eventarc's events and the
functions-framework's conversion of a raw push do not, so the attempt is then judged by the
message's age: younger than ``FRESH_SECONDS`` is a first delivery.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery
from cloudq.distribution import ADAPTER_DISTRIBUTIONS, install_hint
from cloudq.errors import CloudqError, ConfigurationError, MalformedEvent
from cloudq.logsafe import get_logger
from cloudq.outcome import Defer, Outcome
from cloudq.serverless import (
    BatchRecord,
    Status,
    check_seconds,
    end_invocation,
    foreign_queue,
    own_queue,
    require_broker,
    run_batch,
)
from cloudq.settle import HOLDS_BEFORE_RESEND, settle
from cloudq_pubsub.broker import MESSAGE_ID_ATTRIBUTE, PubSubBroker

if TYPE_CHECKING:
    from cloudq.app import App

__all__ = ["DeliveryHeld", "cloud_function", "event_to_delivery", "process_event"]

logger = get_logger("cloudq.pubsub.functions")
PLATFORM = "cloud-functions"
"""The heartbeat's and the hooks' name for this platform."""

FRESH_SECONDS = 10.0
"""A message younger than this is taken for a first delivery when the event has no attempt
count: Pub/Sub's default minimum retry backoff is 10 s, so a redelivery is older."""
SAFETY_MARGIN_SECONDS = 1.0
"""Time kept back from the function's timeout to apply the outcome before it is killed."""

_TOPIC = re.compile(r"projects/([^/]+)/topics/([^/?#]+)")
_SUBSCRIPTION = re.compile(r"projects/([^/]+)/subscriptions/([^/?#]+)")

CloudEventFunction = Callable[[Any], None]


class DeliveryHeld(CloudqError):
    """Raised to nack a push delivery on purpose: it is not due yet; Pub/Sub brings it back."""


def _get(event: Any, name: str) -> Any:
    """A CloudEvent attribute from ``cloudevents``' object or a plain mapping."""
    try:
        return event[name]
    except (KeyError, TypeError):
        getter = getattr(event, "get", None)
        return getter(name) if callable(getter) else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _own_queue(broker: PubSubBroker, project: str, name: str) -> str | None:
    """The cloudq queue of topic (or subscription) ``name`` in ``project``, if it is this
    broker's: the same project, the broker's prefix, a name the broker would give."""
    return own_queue(broker, name) if project == broker.project else None


def event_to_delivery(broker: PubSubBroker, event: Any, now: datetime) -> Delivery:
    """The Delivery a worker would have pulled, from a Pub/Sub CloudEvent (no ack id)."""
    data = getattr(event, "data", None)
    if data is None and isinstance(event, dict):
        data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise MalformedEvent(
            f"not a Pub/Sub CloudEvent (type {_get(event, 'type')!r}): the function's trigger "
            "must be a Pub/Sub topic"
        )
    message: dict[str, Any] = data["message"]
    source = str(_get(event, "source") or "")
    found = _TOPIC.search(source) or _SUBSCRIPTION.search(str(data.get("subscription", "")))
    if found is None:
        raise MalformedEvent(
            f"the event names no Pub/Sub topic (source {source!r}): cannot tell the queue"
        )
    queue = _own_queue(broker, found.group(1), found.group(2))
    if queue is None:
        foreign = foreign_queue(
            found.group(0),
            broker,
            f"(project {broker.project!r}) Pub/Sub redelivers it until its subscription's "
            "dead-letter policy takes it",
        )
        logger.warning("%s", foreign)
        raise foreign
    try:
        attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
        message_id = str(message.get("messageId") or message.get("message_id") or _get(event, "id"))
        attempt = data.get("deliveryAttempt") or message.get("deliveryAttempt")
        if attempt:
            receive_count = int(attempt)
        else:
            published = _parse_time(message.get("publishTime") or _get(event, "time"))
            fresh = published is None or (now - published).total_seconds() < FRESH_SECONDS
            receive_count = 1 if fresh else HOLDS_BEFORE_RESEND + 1
        body = base64.b64decode(message.get("data") or "")
        group = message.get("orderingKey") or None
        if group is not None and not isinstance(group, str):
            raise TypeError(f"orderingKey is a {type(group).__name__}")
    except (AttributeError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
        raise MalformedEvent(
            f"not a Pub/Sub CloudEvent: its message is malformed ({exc}); Pub/Sub redelivers it "
            "until its dead-letter policy takes it"
        ) from exc
    return Delivery(
        queue=queue,
        body=body,
        message_id=attributes.pop(MESSAGE_ID_ATTRIBUTE, "") or message_id,
        receive_count=receive_count,
        handle=None,
        attributes=attributes,
        group=group,
    )


def process_event(app: App, event: Any, deadline: float | None = None) -> Outcome:
    """Run one event's task and apply its outcome; raise where redelivery is wanted.

    ``deadline`` is the ``time.monotonic()`` the invocation is killed at, if known.
    """
    broker = require_broker(app, PubSubBroker, "the Cloud Functions handler", "pubsub://")
    record = BatchRecord(
        id=str(_get(event, "id") or ""),
        decode=partial(event_to_delivery, broker, event, app.clock.now()),
    )
    time_left = None if deadline is None else partial(_seconds_to, deadline)
    [result] = run_batch(
        app,
        PLATFORM,
        [record],
        time_left=time_left,
        margin=SAFETY_MARGIN_SECONDS,
        platform_holds=True,  # held: nacked by raising DeliveryHeld
        settle=settle,
    )
    if result.error is not None:
        raise result.error  # the push is nacked: Pub/Sub redelivers it
    assert result.delivery is not None and result.outcome is not None  # settled or held
    if result.status is Status.HELD:
        assert isinstance(result.outcome, Defer)
        logger.info(
            "message %s on %s due at %s: held (nacked) for Pub/Sub to redeliver",
            result.delivery.message_id,
            result.delivery.queue,
            result.outcome.until.isoformat(),
        )
        raise DeliveryHeld(
            f"task {result.outcome.envelope.task}[{result.outcome.envelope.id}] is due at "
            f"{result.outcome.until.isoformat()}: nacked so that Pub/Sub redelivers it later"
        )
    return result.outcome


def _seconds_to(deadline: float) -> float:
    return deadline - time.monotonic()


def cloud_function(app: App, *, timeout_seconds: float | None = None) -> CloudEventFunction:
    """The function to deploy: ``handler = cloud_function(app)``.

    ``timeout_seconds`` is the function's configured timeout: tasks then run with the time left
    (less a 1 s margin) as their hard limit. Needs ``functions-framework``
    (``pip install 'cloudqueue-tasks-pubsub[functions]'``).
    """
    timeout_seconds = check_seconds(timeout_seconds, "timeout_seconds")
    try:
        import functions_framework
    except ImportError as exc:
        raise ConfigurationError(
            "the Cloud Functions handler needs functions-framework: "
            + install_hint("functions", ADAPTER_DISTRIBUTIONS["pubsub"])
        ) from exc

    @functions_framework.cloud_event
    def handler(event: Any) -> None:
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        try:
            process_event(app, event, deadline)
        finally:
            end_invocation(app, PLATFORM)

    return handler
