"""Applying an Outcome to its delivery: the only place results are written and messages moved.

Order is what makes "nothing lost" hold: record the result, send what must be sent (the retry
copy, the deferred copy, chain links), and only then acknowledge; a claim-checked body is
deleted only once its acknowledgement succeeded. A crash in between leads to a duplicate run,
never a lost task (at-least-once).

Signing (``signing_keys``): what is sent from here is signed by the producer; what this module
keeps in the result store for later sends (a chord's header results, a SUCCESS record's result)
is sealed (``cloudq.storeseal``), and what it reads back from there is checked before anything
is sent from it. A dead letter of an envelope that ``execute`` verified is signed too, so that
``dlq redrive`` can tell the worker's dead letters from anything else in the dead-letter queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cloudq.adapters.base import Delivery
from cloudq.canvas import (
    Signature,
    build_envelope,
    errback_envelopes,
    fail_downstream,
    fail_unsent,
    signature_from,
)
from cloudq.claimcheck import acknowledge, pointer_url
from cloudq.envelope import (
    HEADER_ERROR_TRACEBACK,
    Envelope,
    decode,
    sign,
    trace_context,
    verify,
)
from cloudq.errors import CloudqError, MessageTooLarge, SignatureError
from cloudq.execute import error_info
from cloudq.ids import new_id
from cloudq.logsafe import get_logger
from cloudq.outcome import Ack, DeadLetter, Defer, Outcome, RetryAt
from cloudq.producer import is_fifo, send_envelopes
from cloudq.results.base import ErrorInfo, State, TaskResult
from cloudq.storeseal import (
    RESULT_SEAL,
    claimed_task_id,
    open_chord_body,
    open_chord_parts,
    seal_chord_part,
    seal_of,
)

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.settle")

AckFn = Callable[[Delivery], None]


@runtime_checkable
class QueuedAck(Protocol):
    """An ``ack`` that only queues the acknowledgement (the worker's batching ``_Acker``): it
    deletes a parked body itself once the ack succeeded (``cloudq.claimcheck.acknowledge``).
    Any other ``ack`` function counts as done when it returns; the parked body goes then."""

    drops_parked: bool

    def __call__(self, delivery: Delivery) -> None: ...


def _store(app: App, result: TaskResult | None) -> None:
    if result is None or app.backend is None:
        return
    if result.state == State.SUCCESS and app.signing_keys:
        seal = seal_of(app.signing_keys, RESULT_SEAL, [result.task_id], result.result)
        result = result.model_copy(update={"seal": seal})
    try:
        app.backend.store(result, app.conf.result_expires)
    except Exception:
        logger.exception("could not store result of task %s (%s)", result.task_id, result.state)


HOLDS_BEFORE_RESEND = 1
"""Where a broker has no native delay (Pub/Sub), a message is held at most this many times;
then it is re-sent fresh, so waiting never counts toward its max delivery attempts."""


def holds(app: App, delivery: Delivery) -> bool:
    """Whether a deferred delivery waits by being held (not re-sent with a native delay).

    FIFO queues are always held (a re-send would lose the order; each hold counts as a
    receive). Brokers without native delay hold, then re-send fresh once held enough. The
    serverless handlers ask it too (``cloudq.serverless.run_batch``): a held record is left for
    its platform to redeliver.
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
        return _fail_follow_up(app, parent, sig.task, task_id, sig.errlinks, exc, sig)


def _fail_follow_up(
    app: App,
    parent: Envelope,
    task: str,
    task_id: str,
    errlinks: Sequence[Any],
    exc: Exception,
    after: Signature | Envelope | None = None,
) -> list[Envelope]:
    """A follow-up that can never be sent fails here: a FAILURE record under its id (and for
    what follows it, ``after``'s links and chord), and its error callbacks to send; the chain
    stops there."""
    logger.error(
        "follow-up %s[%s] of %s[%s] cannot be sent (%s): it fails here, the chain stops",
        task,
        task_id,
        parent.task,
        parent.id,
        exc,
    )
    failed = TaskResult(
        task_id=task_id,
        state=State.FAILURE,
        task=task,
        error=error_info(exc),
        date_done=app.clock.now(),
    )
    _store(app, failed)
    if after is not None:
        chord_id = after.chord_id if isinstance(after, Envelope) else after.options.get("chord_id")
        fail_unsent(app, task_id, after.links, chord_id, failed.error or error_info(exc))
    return _errbacks(app, parent, errlinks, task_id)


def _errbacks(
    app: App, parent: Envelope, errlinks: Sequence[Any], failed_id: str
) -> list[Envelope]:
    """Error callbacks called with the failed task's id (Celery's ``(request, exc,
    traceback)`` ones are called here); one that cannot be built is logged."""
    out = []
    for errlink in errlinks:
        try:
            sig = errlink if isinstance(errlink, Signature) else signature_from(errlink, app)
            out += errback_envelopes(app, sig, parent, failed_id)
        except _UNSENDABLE as exc:
            logger.error(
                "error callback of %s[%s] cannot be sent, dropped: %s", parent.task, failed_id, exc
            )
    return _traced(parent, out)


def _after_success(app: App, envelope: Envelope, value: Any) -> list[Envelope]:
    """Chain links get the result; a chord header counts, and the last one sends the body."""
    out = [e for link in envelope.links for e in _follow_up(app, envelope, link, [value])]
    chord_id, index = envelope.chord_id, envelope.chord_index
    if chord_id is not None and index is not None:
        keys = app.signing_keys
        part = seal_chord_part(keys, chord_id, index, value)
        done = app.chord_store().chord_part_done(chord_id, index, part)
        if done is not None:
            out += _chord_body(app, envelope, chord_id, *done)
    family = {"root_id": envelope.root_id or envelope.id, "parent_id": envelope.id}
    return _traced(envelope, [e.model_copy(update=family) for e in out])


def _traced(parent: Envelope, envelopes: list[Envelope]) -> list[Envelope]:
    """Follow-ups carry their parent's trace context (``TRACE_CONTEXT_HEADERS``)."""
    traced = trace_context(parent.headers)
    if not traced:
        return envelopes
    return [e.model_copy(update={"headers": {**e.headers, **traced}}) for e in envelopes]


def _chord_body(
    app: App, envelope: Envelope, chord_id: str, stored: Any, parts: Sequence[Any]
) -> list[Envelope]:
    """The chord's body with the header results, each read back from the store and checked:
    a body that does not verify sends nothing (not even its error callbacks, which are part of
    what failed to verify); results that do not verify fail the (verified) body."""
    keys = app.signing_keys
    try:
        body = open_chord_body(keys, chord_id, stored)
    except SignatureError as exc:
        body_id = claimed_task_id(stored)  # untrusted: it only names where the caller looks
        logger.error(
            "chord %s of %s[%s]: body not sent, the result store's copy is refused: %s",
            chord_id,
            envelope.task,
            envelope.id,
            exc,
        )
        if body_id is not None:
            error = ErrorInfo(type="cloudq.errors.SignatureError", message=str(exc))
            _store(
                app,
                TaskResult(
                    task_id=body_id, state=State.FAILURE, error=error, date_done=app.clock.now()
                ),
            )
        return []
    try:
        results = open_chord_parts(keys, chord_id, parts)
    except SignatureError as exc:
        try:
            sig = signature_from(body, app)
        except _UNSENDABLE as bad:
            logger.error("chord body of %s[%s] is malformed: %s", envelope.task, envelope.id, bad)
            return []
        task_id = str(sig.options.get("task_id") or new_id())
        return _fail_follow_up(app, envelope, sig.task, task_id, sig.errlinks, exc, sig)
    return _follow_up(app, envelope, body, [results])


def _after_failure(app: App, envelope: Envelope) -> list[Envelope]:
    """Error callbacks get the failed task's id; a chord's run once, for its first failure."""
    errlinks: list[Any] = list(envelope.errlinks)
    chord_id = envelope.chord_id
    body: dict[str, Any] | None = None
    if chord_id is not None:
        stored = app.chord_store().chord_fail(chord_id)
        if stored is not None:
            try:
                body = open_chord_body(app.signing_keys, chord_id, stored)
                errlinks += signature_from(body, app).errlinks
            except SignatureError as exc:
                logger.error(
                    "chord %s of %s[%s]: its body's error callbacks are not sent, the result "
                    "store's copy is refused: %s",
                    chord_id,
                    envelope.task,
                    envelope.id,
                    exc,
                )
            except _UNSENDABLE as exc:
                logger.error(
                    "chord body of %s[%s] is malformed: %s", envelope.task, envelope.id, exc
                )
    fail_downstream(app, envelope, body)
    return _errbacks(app, envelope, errlinks, envelope.id)


def _send_follow_ups(app: App, parent: Envelope, envelopes: Sequence[Envelope]) -> None:
    """Send what follows ``parent``. One too large to send (and no claim-check store to park
    it) is treated as one that cannot be built: it fails, its error callbacks go, and the parent
    is still acknowledged (raising would run the parent again on every delivery)."""
    try:
        send_envelopes(app, envelopes)
        return
    except MessageTooLarge:
        pass
    for env in envelopes:  # one by one, to tell which one does not fit
        try:
            send_envelopes(app, [env])
        except MessageTooLarge as exc:
            errbacks = _fail_follow_up(app, parent, env.task, env.id, env.errlinks, exc, env)
            for errback in errbacks:
                try:
                    send_envelopes(app, [errback])
                except MessageTooLarge as too_big:
                    logger.error(
                        "error callback %s[%s] of %s[%s] cannot be sent, dropped: %s",
                        errback.task,
                        errback.id,
                        env.task,
                        env.id,
                        too_big,
                    )


def _dead_letter(app: App, delivery: Delivery, reason: str, envelope: Envelope | None) -> None:
    """Move the delivery to its dead-letter queue.

    An envelope whose delivery verifies (then given the error headers) goes signed, so that
    redrive can prove the dead letter is the worker's; without one (undecodable, unverified) the
    original bytes go as they came. A copy over the broker's size limit is not left to the
    broker's own redrive: it goes without its traceback header (the reason and error
    headers are capped by ``execute``), then as the original bytes (the reason still travels
    as the broker's attribute).
    """
    # A parked body stays parked: the dead letter keeps its pointer (and the object).
    if envelope is None or pointer_url(delivery.body) is not None or not _ours(app, delivery):
        app.broker.dead_letter(delivery, reason, None)
        return
    slim = {k: v for k, v in envelope.headers.items() if k != HEADER_ERROR_TRACEBACK}
    copies = [envelope, envelope.model_copy(update={"headers": slim})]
    for copy in copies:
        try:
            app.broker.dead_letter(delivery, reason, sign(copy, app.signing_keys).encode())
            return
        except MessageTooLarge as exc:
            logger.warning(
                "dead letter of %s[%s] is too large: %s", envelope.task, envelope.id, exc
            )
    logger.warning(
        "dead letter of %s[%s] goes as the original message, the reason as an attribute only",
        envelope.task,
        envelope.id,
    )
    app.broker.dead_letter(delivery, reason, None)


def _ours(app: App, delivery: Delivery) -> bool:
    """Whether the delivery's own envelope verifies, checked here again before its dead letter
    is signed: not every path to a DeadLetter went through ``execute``'s check (a pool child
    killed at its time limit is dead-lettered from the parent's unverified decode). Dead
    letters are rare; one more HMAC for each costs nothing."""
    if not app.signing_keys:
        return True
    try:
        verify(decode(delivery.body), app.signing_keys)
    except Exception:  # noqa: BLE001 - untrusted bytes: any failure means "not ours"
        return False
    return True


def _acknowledge(app: App, delivery: Delivery, ack: AckFn | None) -> None:
    """Acknowledge; a parked body is deleted once the acknowledgement succeeded (see
    ``QueuedAck``)."""
    if ack is None:
        acknowledge(app, [delivery], app.broker.ack)
    elif isinstance(ack, QueuedAck) and ack.drops_parked:
        ack(delivery)
    else:
        acknowledge(app, [delivery], lambda deliveries: ack(deliveries[0]))


def settle(app: App, delivery: Delivery, outcome: Outcome, ack: AckFn | None = None) -> None:
    """Apply ``outcome``. ``ack`` lets a worker batch acknowledgements; default: ack now.

    A parked (claim-checked) body is deleted after ``ack`` returns, unless ``ack`` is a
    ``QueuedAck``: that one calls ``cloudq.claimcheck.acknowledge`` (or ``drop_parked``) itself
    once the acknowledgement really happened.

    Raises if a send fails: the delivery is then left alone and the broker redelivers it.
    """
    match outcome:
        case Ack(result=result, follow_ups=follow_ups, envelope=envelope, value=value):
            _store(app, result)
            nexts = list(follow_ups)
            if envelope is not None:
                nexts += _after_success(app, envelope, value)
            if nexts and envelope is not None:
                _send_follow_ups(app, envelope, nexts)
            elif nexts:
                send_envelopes(app, nexts)
            _acknowledge(app, delivery, ack)
        case RetryAt(envelope=envelope, result=result):
            _store(app, result)
            send_envelopes(app, [envelope], dedup_suffix=f"-a{envelope.attempt}")
            _acknowledge(app, delivery, ack)
        case Defer(until=until) if holds(app, delivery):
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
            app.hooks.emit("dead_letter", envelope=envelope, delivery=delivery, reason=reason)
            if envelope is not None:
                errbacks = _after_failure(app, envelope)
                if errbacks:
                    send_envelopes(app, errbacks)
            _dead_letter(app, delivery, reason, envelope)
