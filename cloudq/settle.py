"""Applying an Outcome to its delivery: the only place results are written and messages moved.

Order is what makes "nothing lost" hold: record the result, send what must be sent (the retry
copy, the deferred copy, chain links), and only then acknowledge. A crash in between leads to a
duplicate run, never a lost task (at-least-once).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery
from cloudq.canvas import build_envelope, signature_from
from cloudq.claimcheck import pointer_url
from cloudq.envelope import Envelope
from cloudq.outcome import Ack, DeadLetter, Defer, Outcome, RetryAt
from cloudq.producer import is_fifo, send_envelopes
from cloudq.results.base import TaskResult

if TYPE_CHECKING:
    from cloudq.app import App

logger = logging.getLogger("cloudq.settle")

AckFn = Callable[[Delivery], None]


def _store(app: App, result: TaskResult | None) -> None:
    if result is None or app.backend is None:
        return
    try:
        app.backend.store(result, app.conf.result_expires)
    except Exception:
        logger.exception("could not store result of task %s (%s)", result.task_id, result.state)


HOLDS_BEFORE_RESEND = 1
"""Where a broker has no native delay (Pub/Sub), a message is held at most this many times;
then it is re-sent fresh, so waiting never counts toward its max delivery attempts."""


def _hold(app: App, delivery: Delivery) -> bool:
    """Whether a deferred delivery waits by being held (not re-sent with a native delay).

    FIFO queues are always held (a re-send would lose the order; each hold counts as a
    receive). Brokers without native delay hold, then re-send fresh once held enough.
    """
    if is_fifo(delivery.queue):
        return True
    no_native_delay = app.broker.limits.max_delay_seconds == 0
    return no_native_delay and delivery.receive_count <= HOLDS_BEFORE_RESEND


def _after_success(app: App, envelope: Envelope, value: Any) -> list[Envelope]:
    """Chain links get the result; a chord header counts, and the last one sends the body."""
    out = [build_envelope(app, signature_from(link, app), [value]) for link in envelope.links]
    if envelope.chord_id is not None and envelope.chord_index is not None:
        done = app.chord_store().chord_part_done(envelope.chord_id, envelope.chord_index, value)
        if done is not None:
            body, results = done
            out.append(build_envelope(app, signature_from(body, app), [results]))
    family = {"root_id": envelope.root_id or envelope.id, "parent_id": envelope.id}
    return [e.model_copy(update=family) for e in out]


def _after_failure(app: App, envelope: Envelope) -> list[Envelope]:
    """Error callbacks get the failed task's id; a chord's run once, for its first failure."""
    errlinks = [signature_from(e, app) for e in envelope.errlinks]
    if envelope.chord_id is not None:
        body = app.chord_store().chord_fail(envelope.chord_id)
        if body is not None:
            errlinks += signature_from(body, app).errlinks
    return [build_envelope(app, sig, [envelope.id]) for sig in errlinks]


def settle(app: App, delivery: Delivery, outcome: Outcome, ack: AckFn | None = None) -> None:
    """Apply ``outcome``. ``ack`` lets a worker batch acknowledgements; default: ack now.

    Raises if a send fails: the delivery is then left alone and the broker redelivers it.
    """
    claim = pointer_url(delivery.body)
    plain_ack: AckFn = ack or (lambda d: app.broker.ack([d]))

    def do_ack(d: Delivery) -> None:
        plain_ack(d)
        if claim is not None and app.claim_checks is not None:
            try:
                app.claim_checks.delete(claim)
            except Exception:
                logger.exception("could not delete claim-check object %s", claim)

    match outcome:
        case Ack(result=result, follow_ups=follow_ups, envelope=envelope, value=value):
            _store(app, result)
            nexts = list(follow_ups)
            if envelope is not None:
                nexts += _after_success(app, envelope, value)
            if nexts:
                send_envelopes(app, nexts)
            do_ack(delivery)
        case RetryAt(envelope=envelope, result=result):
            _store(app, result)
            send_envelopes(app, [envelope], dedup_suffix=f"-a{envelope.attempt}")
            do_ack(delivery)
        case Defer(until=until) if _hold(app, delivery):
            # No native delay here: keep this very message invisible until due (or as long as
            # the broker allows), instead of a re-send that would come straight back.
            wait = max(1.0, (until - app.clock.now()).total_seconds())
            cap = app.broker.limits.max_lease_seconds
            app.broker.release([delivery], wait if cap is None else min(wait, cap))
        case Defer(envelope=envelope, until=until):
            logger.debug(
                "task %s[%s] due at %s: re-sent as a delay hop",
                envelope.task,
                envelope.id,
                until.isoformat(),
            )
            hop = envelope if envelope.eta == until else envelope.model_copy(update={"eta": until})
            send_envelopes(app, [hop], dedup_suffix=f"-h{uuid.uuid4().hex[:8]}")
            do_ack(delivery)
        case DeadLetter(reason=reason, envelope=envelope, result=result):
            _store(app, result)
            if envelope is not None:
                errbacks = _after_failure(app, envelope)
                if errbacks:
                    send_envelopes(app, errbacks)
            # A parked body stays parked: the dead letter keeps its pointer (and the object).
            body = envelope.encode() if envelope is not None and claim is None else None
            app.broker.dead_letter(delivery, reason, body)
            app.reporter.report(envelope, reason, delivery.queue)
