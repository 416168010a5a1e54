"""Applying an Outcome to its delivery: the only place results are written and messages moved.

Order is what makes "nothing lost" hold: record the result, send what must be sent (the retry
copy, the deferred copy, chain links), and only then acknowledge. A crash in between leads to a
duplicate run, never a lost task (at-least-once).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery
from cloudq.canvas import Signature, build_envelope, signature_from
from cloudq.claimcheck import pointer_url
from cloudq.envelope import Envelope
from cloudq.errors import CloudqError
from cloudq.execute import error_info
from cloudq.ids import new_id
from cloudq.logsafe import get_logger
from cloudq.outcome import Ack, DeadLetter, Defer, Outcome, RetryAt
from cloudq.producer import is_fifo, send_envelopes
from cloudq.results.base import State, TaskResult

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.settle")

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


_UNSENDABLE = (CloudqError, TypeError, ValueError)
"""What building a follow-up raises when it can never be sent: its task is unknown here, or the
parent's result does not fit its arguments (validation errors are ValueErrors)."""


def _follow_up(
    app: App, parent: Envelope, data: Mapping[str, Any], args: Sequence[Any]
) -> list[Envelope]:
    """The follow-up's envelope (a chain link, a chord body), or, if it can never be built, its
    failure: a FAILURE record under its id and its error callbacks. Raising instead would leave
    the parent's message to be run again on every redelivery until the broker gave up on it."""
    try:
        sig = signature_from(data, app)
    except _UNSENDABLE as exc:
        logger.error("follow-up of %s[%s] is malformed, dropped: %s", parent.task, parent.id, exc)
        return []
    try:
        return [build_envelope(app, sig, args)]
    except _UNSENDABLE as exc:
        task_id = str(sig.options.get("task_id") or new_id())
        logger.error(
            "follow-up %s[%s] of %s[%s] cannot be sent (%s): it fails here, the chain stops",
            sig.task,
            task_id,
            parent.task,
            parent.id,
            exc,
        )
        error = error_info(exc)
        failed = TaskResult(
            task_id=task_id,
            state=State.FAILURE,
            task=sig.task,
            error=error,
            date_done=app.clock.now(),
        )
        _store(app, failed)
        return _errbacks(app, parent, sig.errlinks, task_id)


def _errbacks(
    app: App, parent: Envelope, errlinks: Sequence[Any], failed_id: str
) -> list[Envelope]:
    """Error callbacks called with the failed task's id; one that cannot be built is logged."""
    out = []
    for errlink in errlinks:
        try:
            sig = errlink if isinstance(errlink, Signature) else signature_from(errlink, app)
            out.append(build_envelope(app, sig, [failed_id]))
        except _UNSENDABLE as exc:
            logger.error(
                "error callback of %s[%s] cannot be sent, dropped: %s", parent.task, failed_id, exc
            )
    return out


def _after_success(app: App, envelope: Envelope, value: Any) -> list[Envelope]:
    """Chain links get the result; a chord header counts, and the last one sends the body."""
    out = [e for link in envelope.links for e in _follow_up(app, envelope, link, [value])]
    if envelope.chord_id is not None and envelope.chord_index is not None:
        done = app.chord_store().chord_part_done(envelope.chord_id, envelope.chord_index, value)
        if done is not None:
            body, results = done
            out += _follow_up(app, envelope, body, [results])
    family = {"root_id": envelope.root_id or envelope.id, "parent_id": envelope.id}
    return [e.model_copy(update=family) for e in out]


def _after_failure(app: App, envelope: Envelope) -> list[Envelope]:
    """Error callbacks get the failed task's id; a chord's run once, for its first failure."""
    errlinks: list[Any] = list(envelope.errlinks)
    if envelope.chord_id is not None:
        body = app.chord_store().chord_fail(envelope.chord_id)
        if body is not None:
            try:
                errlinks += signature_from(body, app).errlinks
            except _UNSENDABLE as exc:
                logger.error(
                    "chord body of %s[%s] is malformed: %s", envelope.task, envelope.id, exc
                )
    return _errbacks(app, envelope, errlinks, envelope.id)


def _acknowledge(app: App, delivery: Delivery, ack: AckFn | None) -> None:
    """Acknowledge, then delete the parked body of a claim-checked message (it is done)."""
    if ack is None:
        app.broker.ack([delivery])
    else:
        ack(delivery)
    claim = pointer_url(delivery.body)
    if claim is not None and app.claim_checks is not None:
        try:
            app.claim_checks.delete(claim)
        except Exception:
            logger.exception("could not delete claim-check object %s", claim)


def settle(app: App, delivery: Delivery, outcome: Outcome, ack: AckFn | None = None) -> None:
    """Apply ``outcome``. ``ack`` lets a worker batch acknowledgements; default: ack now.

    Raises if a send fails: the delivery is then left alone and the broker redelivers it.
    """
    match outcome:
        case Ack(result=result, follow_ups=follow_ups, envelope=envelope, value=value):
            _store(app, result)
            nexts = list(follow_ups)
            if envelope is not None:
                nexts += _after_success(app, envelope, value)
            if nexts:
                send_envelopes(app, nexts)
            _acknowledge(app, delivery, ack)
        case RetryAt(envelope=envelope, result=result):
            _store(app, result)
            send_envelopes(app, [envelope], dedup_suffix=f"-a{envelope.attempt}")
            _acknowledge(app, delivery, ack)
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
            _acknowledge(app, delivery, ack)
        case DeadLetter(reason=reason, envelope=envelope, result=result):
            _store(app, result)
            if envelope is not None:
                errbacks = _after_failure(app, envelope)
                if errbacks:
                    send_envelopes(app, errbacks)
            # A parked body stays parked: the dead letter keeps its pointer (and the object).
            parked = pointer_url(delivery.body) is not None
            body = envelope.encode() if envelope is not None and not parked else None
            app.broker.dead_letter(delivery, reason, body)
            app.reporter.report(envelope, reason, delivery.queue)
