"""Turning envelopes into broker messages: signing, size check, delay planning, batching."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cloudq.adapters.base import BrokerLimits, OutgoingMessage
from cloudq.adapters.wire import is_fifo
from cloudq.claimcheck import check_format, pointer_message
from cloudq.envelope import Envelope, sign
from cloudq.errors import MessageTooLarge
from cloudq.logsafe import get_logger
from cloudq.priority import send_queue
from cloudq.results.children import note_sent

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.producer")

__all__ = [
    "Prepared",
    "ensure_queues",
    "is_fifo",  # re-exported
    "native_delay",
    "prepare",
    "published",
    "send_envelopes",
    "to_message",
]


def native_delay(eta: datetime | None, now: datetime, limits: BrokerLimits) -> float:
    """The part of the wait the broker can hold; the rest is hopped (re-sent when it ends)."""
    if eta is None:
        return 0.0
    wait = max(0.0, (eta - now).total_seconds())
    cap = limits.max_delay_seconds
    return wait if cap is None else min(wait, cap)


def to_message(app: App, envelope: Envelope, dedup_suffix: str = "") -> OutgoingMessage:
    """One envelope as an outgoing message, or ``MessageTooLarge`` before anything is sent."""
    limits = app.broker.limits
    body = sign(envelope, app.signing_keys).encode()
    attributes = {"cloudq-task": envelope.task}
    if len(body) > limits.max_message_bytes:
        store = app.claim_checks
        if store is None:
            raise MessageTooLarge(
                f"task {envelope.task!r} ({envelope.id}) encodes to {len(body):,} bytes, over "
                f"the broker's limit of {limits.max_message_bytes:,}: pass ids or object-store "
                "keys instead of large values, or set claim_check_url (e.g. s3://bucket/cloudq)"
            )
        fmt = app.conf.claim_check_format
        check_format(app.conf.claim_check_url or "", fmt)  # before parking anything
        url = store.put(f"{envelope.id}-{envelope.attempt}-{uuid.uuid4().hex[:8]}", body)
        size = len(body)
        body, marks = pointer_message(url, size, fmt)
        attributes.update(marks)
        logger.debug("task %s[%s]: %d bytes parked at %s", envelope.task, envelope.id, size, url)
    # Adapters whose provider takes whole seconds round up: never visible before the eta. FIFO
    # queues take no per-message delay: the eta stays in the envelope and the consumer defers.
    fifo = is_fifo(envelope.queue)
    delay = 0.0
    if envelope.eta is not None and not fifo:
        delay = native_delay(envelope.eta, app.clock.now(), limits)
    return OutgoingMessage(
        body=body,
        delay_seconds=delay,
        message_id=envelope.id + dedup_suffix,
        group=envelope.fifo_group if fifo else None,
        attributes=attributes,
    )


def _before_publish(app: App, envelope: Envelope) -> Envelope:
    """The ``before_publish`` hook; headers it added travel with the task."""
    headers = dict(envelope.headers)
    app.hooks.emit("before_publish", envelope=envelope, queue=envelope.queue, headers=headers)
    if headers == envelope.headers:
        return envelope
    clean = {str(k): str(v) for k, v in headers.items()}
    return envelope.model_copy(update={"headers": clean})


@dataclass(frozen=True)
class Prepared:
    """What a send hands the broker: messages in batches per queue, and the envelopes as the
    ``before_publish`` hooks left them (for ``after_publish``)."""

    envelopes: Sequence[Envelope]
    batches: list[tuple[str, Sequence[OutgoingMessage]]]

    @property
    def queues(self) -> list[str]:
        return list(dict.fromkeys(queue for queue, _ in self.batches))


def prepare(app: App, envelopes: Sequence[Envelope], dedup_suffix: str = "") -> Prepared:
    """Everything a send does before the broker call, for ``send_envelopes`` and ``cloudq.aio``
    alike: the ``before_publish`` hooks, priority routing, signing, claim checks, delay
    planning, batching. Encodes all first, so a bad one sends nothing. Blocks only to park a
    claim check (an object-store put); queues are ensured by the caller (``ensure_queues``)."""
    if app.hooks.active("before_publish"):
        envelopes = [_before_publish(app, envelope) for envelope in envelopes]
    by_queue: dict[str, list[OutgoingMessage]] = defaultdict(list)
    for envelope in envelopes:
        queue = send_queue(app, envelope.queue, envelope.priority)
        by_queue[queue].append(to_message(app, envelope, dedup_suffix))
    size = app.broker.limits.max_batch
    batches: list[tuple[str, Sequence[OutgoingMessage]]] = [
        (queue, messages[start : start + size])
        for queue, messages in by_queue.items()
        for start in range(0, len(messages), size)
    ]
    return Prepared(envelopes, batches)


def ensure_queues(app: App, prepared: Prepared) -> None:
    """Create the queues a send goes to, once per process (``App.ensure_queue``)."""
    for queue in prepared.queues:
        app.ensure_queue(queue)


def published(app: App, prepared: Prepared) -> None:
    """What follows a send that went out: the ``after_publish`` hooks and the sending task's
    ``children``."""
    logger.debug("sent %d message(s) to %s", len(prepared.envelopes), ", ".join(prepared.queues))
    hooks = app.hooks
    if hooks.active("after_publish"):
        for envelope in prepared.envelopes:
            hooks.emit("after_publish", envelope=envelope, queue=envelope.queue)
    note_sent(app, prepared.envelopes)  # AsyncResult.children of the task running here, if any


def send_envelopes(app: App, envelopes: Sequence[Envelope], dedup_suffix: str = "") -> None:
    """Prepare, ensure the queues, send batch by batch, then ``published``: the sync hand-over
    (``cloudq.aio.asend_envelopes`` is the async one)."""
    prepared = prepare(app, envelopes, dedup_suffix)
    ensure_queues(app, prepared)
    for queue, messages in prepared.batches:
        app.broker.send(queue, messages)
    published(app, prepared)
