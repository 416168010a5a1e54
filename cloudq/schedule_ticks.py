"""A run of its own for every tick of an exported schedule (``cloudq beat --export``).

EventBridge Scheduler, Cloud Scheduler and a Logic App recurrence send one fixed body on every
tick, so every tick would carry the same task id: an ``idempotent=True`` task would run once and
be skipped forever after, and each tick's result would overwrite the last. The exported envelope
asks, in a signed header, for its id to be derived on the receiving side from the message that
carries it: the broker's message id, which is new on every tick (SQS's MessageId for
EventBridge, which can set none; Pub/Sub's message id for Cloud Scheduler, which sets no
attributes; the Logic App's ``MessageId``, which the export sets to ``<task id>-<scheduled
time>``), and the same on a redelivery of that tick, so idempotency still skips the duplicate.

EventBridge's ``<aws.scheduler.scheduled-time>`` placeholder cannot be used: it would be
substituted inside the signed envelope and break its signature.

The derived envelope drops the header, so its retries and follow-ups keep the derived id.
Deriving never raises: the message id comes from the broker, and an odd one is hashed.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloudq.adapters.base import Delivery
    from cloudq.envelope import Envelope

PER_TICK_HEADER = "cloudq-id-per-tick"
"""Set by the export (inside the signed envelope): derive this envelope's id per message."""
FROM_MESSAGE_ID = "message-id"
"""The header's value: the tick is the broker's message id."""

_PLAIN_ID = re.compile(r"[A-Za-z0-9._:+-]{1,100}")


def _tick(message_id: str) -> str:
    if _PLAIN_ID.fullmatch(message_id):
        return message_id
    return hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[:32]


def tick_id(envelope_id: str, message_id: str) -> str:
    """``<task id>-<tick>``; a message id already of that form (the Logic App's) is kept."""
    tick = _tick(message_id)
    if tick.startswith(f"{envelope_id}-"):
        return tick
    return f"{envelope_id}-{tick}"


def per_tick(envelope: Envelope, delivery: Delivery) -> Envelope:
    """The envelope with its per-tick id if it asks for one (call after verifying it)."""
    if envelope.headers.get(PER_TICK_HEADER) != FROM_MESSAGE_ID or not delivery.message_id:
        return envelope
    headers = {k: v for k, v in envelope.headers.items() if k != PER_TICK_HEADER}
    if delivery.message_id == envelope.id:  # sent by cloudq itself with the fixed id
        return envelope.model_copy(update={"headers": headers})
    new_id = tick_id(envelope.id, delivery.message_id)
    return envelope.model_copy(update={"id": new_id, "headers": headers})
