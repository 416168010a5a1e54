"""Fresh starts: a message the broker is about to give up on, though it never failed.

A failed attempt travels as a new message (the retry copy, attempt + 1), so a message's receive
count grows only when a delivery ended without an outcome: the worker holding it was killed, its
lease lapsed, settling it failed, a stop released it. A SIGKILL takes the count of every message
the worker held, prefetched ones included, so healthy tasks that sit in several killed workers'
hands (SQS hands out the oldest first: the same ones each time) reach ``queue_max_receive_count``
and the broker dead-letters them, never having failed, with no reason (issue 26, finding 12).

So the worker's receive path looks at each delivery's count before holding it. One received at
``RESEND_MARGIN`` receives or less before the broker's last is re-sent fresh and the old one
acknowledged: the very bytes (envelope, signature, attempt unchanged: nothing is signed here),
verified first with ``open_envelope``; one that fails verification takes the normal path to the
dead-letter queue with its reason, it is never kept alive. The copy carries its number of fresh
starts in ``FRESH_STARTS_ATTRIBUTE``; a message started fresh ``MAX_FRESH_STARTS`` times is
dead-lettered instead, with a reason and a ``WorkerLostError`` failure: a task that kills every
worker taking it (a segfault, the OOM killer) still ends in the dead-letter queue, after about
``(MAX_FRESH_STARTS + 1) * (queue_max_receive_count - 1)`` kills.

Not on FIFO queues: the copy would run after its group's later messages (order is their
contract), and a FIFO deferral is held, a receive each time. Those keep the broker's count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cloudq.adapters.base import Delivery, OutgoingMessage
from cloudq.adapters.wire import is_fifo
from cloudq.envelope import Envelope
from cloudq.errors import WorkerLostError
from cloudq.execute import error_info, failure_outcome, open_envelope
from cloudq.logsafe import get_logger
from cloudq.outcome import DeadLetter
from cloudq.settle import HOLDS_BEFORE_RESEND, settle

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.redelivery")

FRESH_STARTS_ATTRIBUTE = "cloudq-fresh-starts"
"""Message attribute: how often this message was re-sent fresh (untrusted: read as 0..max)."""
MAX_FRESH_STARTS = 2
"""Fresh starts before a message that keeps losing its deliveries is dead-lettered."""
RESEND_MARGIN = 1
"""Re-send this many receives before the broker's last one: SQS calls its count approximate."""


def first_fresh_start(app: App) -> int | None:
    """The receive count from which a delivery is started fresh; None if the queue's max
    receive count leaves no room (it is too low to tell a lost delivery from a held one)."""
    # A broker without native delay holds a deferred message (settle's hold rule) up to
    # HOLDS_BEFORE_RESEND times: receives that lost nothing, so they never count as lost here.
    holds = HOLDS_BEFORE_RESEND if app.broker.limits.max_delay_seconds == 0 else 0
    last = app.conf.queue_max_receive_count
    first = max(2 + holds, last - RESEND_MARGIN)
    return first if first <= last else None


def fresh_starts(delivery: Delivery) -> int:
    """The delivery's fresh starts so far; anything but a small number counts as none (only
    cloudq raises it, one at a time, so a forged value cannot lift the bound)."""
    raw = delivery.attributes.get(FRESH_STARTS_ATTRIBUTE, "")
    plain = raw.isascii() and raw.isdigit() and len(raw) <= 3
    return min(int(raw), MAX_FRESH_STARTS) if plain else 0


def screen(app: App, deliveries: Sequence[Delivery], first: int) -> list[Delivery]:
    """The deliveries to hold and run; those at ``first`` receives or more were re-sent fresh or
    dead-lettered here (or, if that failed, are kept: run as received). Never raises."""
    keep: list[Delivery] = []
    for delivery in deliveries:
        if delivery.receive_count < first or is_fifo(delivery.queue) or not _restart(app, delivery):
            keep.append(delivery)
    return keep


def _restart(app: App, delivery: Delivery) -> bool:
    """Re-send ``delivery`` fresh, or dead-letter it once out of fresh starts; False if it
    should be run as received instead."""
    try:
        envelope = open_envelope(delivery, app)
    except Exception:
        logger.exception("could not open message %s to start it fresh", delivery.message_id)
        return False
    if isinstance(envelope, DeadLetter):
        return False  # execute dead-letters it with this reason; nothing unverified is re-sent
    starts = fresh_starts(delivery)
    if starts >= MAX_FRESH_STARTS:
        try:
            settle(app, delivery, _lost(app, envelope, delivery, starts))
        except Exception:
            logger.exception("could not dead-letter message %s", delivery.message_id)
            return False
        return True
    copy = OutgoingMessage(
        body=delivery.body,
        message_id=delivery.message_id,
        attributes={**delivery.attributes, FRESH_STARTS_ATTRIBUTE: str(starts + 1)},
    )
    try:
        app.broker.send(delivery.queue, [copy])
    except Exception:
        logger.exception("could not re-send message %s fresh", delivery.message_id)
        return False
    logger.warning(
        "task %s[%s] received %d times without an outcome (workers holding it were killed or "
        "lost its lease): re-sent fresh (%d of %d) so the broker does not dead-letter it",
        envelope.task,
        envelope.id,
        delivery.receive_count,
        starts + 1,
        MAX_FRESH_STARTS,
    )
    try:
        app.broker.ack([delivery])
    except Exception:  # the fresh copy is out: this one comes back, a duplicate at worst
        logger.exception(
            "could not acknowledge message %s after its fresh copy", delivery.message_id
        )
    return True


def _lost(app: App, envelope: Envelope, delivery: Delivery, starts: int) -> DeadLetter:
    reason = (
        f"received {delivery.receive_count} times without an outcome after {starts} fresh "
        "starts: every worker holding it was killed or lost its lease (does the task crash "
        "its worker?)"
    )
    task = app.tasks.get(envelope.task)
    keep = bool(app.conf.result_backend) and not (task and task.options.ignore_result)
    return failure_outcome(envelope, error_info(WorkerLostError(reason)), reason, app.clock, keep)
