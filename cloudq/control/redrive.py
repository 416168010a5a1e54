"""Queues and dead letters from the shell: depths, purge, listing and redriving dead letters.

Redrive never loses a message: each batch is sent to the queue first and deleted from the
dead-letter queue only once the send succeeded, so a redrive killed at any point leaves every
message in the queue, in the dead-letter queue (visible again when its short lease ends), or in
both. Duplicates are possible, loss is not.

With ``signing_keys`` set, redrive re-signs what it sends, so it moves only what it can prove
came from us: an envelope whose signature verifies (a worker signs the dead letters of the
envelopes it verified; a message it could not verify keeps its own bytes). The reason attribute
and headers are never evidence: the sender writes them, and on SQS a sender can get a message
of theirs into the dead-letter queue with them (padded to the size limit, the worker's copy
cannot be sent, and the broker moves the original after maxReceiveCount). An unsigned dead
letter stays put unless the operator passes ``trust_unsigned`` (``--trust-unsigned``); one
whose signature does not verify always stays. A dead letter that cannot be read, checked or
turned into a message stays too, with its reason: redrive goes on with the others.

The public calls (``read_dead_letters``, ``list_dead_letters``, ``redrive``, ``redrive_ids``)
are what ``cloudq dlq`` and the dashboard both use: one read loop, one redrive loop.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery, OutgoingMessage, dead_letter_queue_name
from cloudq.adapters.wire import DEAD_LETTER_REASON_ATTRIBUTE
from cloudq.claimcheck import acknowledge, pointer_url
from cloudq.control.events import TASK_HEADER
from cloudq.envelope import (
    HEADER_DEAD_LETTER_REASON,
    HEADER_ERROR_MESSAGE,
    HEADER_ERROR_TRACEBACK,
    HEADER_ERROR_TYPE,
    Envelope,
    decode,
    verify,
)
from cloudq.errors import CloudqError, EnvelopeError
from cloudq.logsafe import get_logger
from cloudq.priority import expand
from cloudq.rate_limits import RATE_SLOT_HEADER
from cloudq.routes import app_queues

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.control.redrive")

REASON_ATTRIBUTE = DEAD_LETTER_REASON_ATTRIBUTE
"""Set by the broker adapter when the worker dead-letters: the reason, as the worker wrote it."""
LIST_LEASE_SECONDS = 30.0
"""``dlq list`` holds what it reads this long at most; it releases them as soon as it is done."""
RECEIVE_WAIT_SECONDS = 1.0
"""A short long-poll: an SQS short poll may answer empty while messages are there."""
STRIPPED_HEADERS = frozenset(
    {
        HEADER_ERROR_TYPE,
        HEADER_ERROR_MESSAGE,
        HEADER_ERROR_TRACEBACK,
        HEADER_DEAD_LETTER_REASON,
        RATE_SLOT_HEADER,
    }
)
UNSIGNED = "unsigned, so its origin cannot be proven (--trust-unsigned moves unsigned ones)"
NOT_FOUND = "not found in the dead-letter queue (moved or purged?)"


# --- queues ---------------------------------------------------------------------------------------
def known_queues(app: App, extra: Sequence[str] = ()) -> list[str]:
    """The app's queues (``routes.app_queues``), then ``extra``; each once."""
    return expand(app, app_queues(app) + [q.strip() for q in extra if q.strip()])


@dataclass(frozen=True)
class QueueRow:
    queue: str
    ready: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    dead_letters: int | None = None
    error: str | None = None


def queue_rows(app: App, names: Sequence[str]) -> list[QueueRow]:
    """Depths per queue; a queue that cannot be read (missing, no permission) says why."""
    rows = []
    for name in names:
        try:
            stats = app.broker.stats(name)
        except CloudqError as exc:
            rows.append(QueueRow(name, error=str(exc)))
            continue
        rows.append(
            QueueRow(name, stats.visible, stats.in_flight, stats.delayed, stats.dead_lettered)
        )
    return rows


def purge(app: App, names: Sequence[str], update: Callable[[int], None]) -> int:
    """Drop every message of each queue; returns how many there were (as the broker counts)."""
    total = 0
    for name in names:
        try:
            stats = app.broker.stats(name)
            total += sum(n or 0 for n in (stats.visible, stats.in_flight, stats.delayed))
        except CloudqError as exc:
            logger.debug("no count for %s before the purge: %s", name, exc)
        app.broker.purge(name)
        update(1)
    return total


# --- dead letters ---------------------------------------------------------------------------------
@dataclass
class DeadLetterInfo:
    message_id: str
    task_id: str | None
    task: str
    attempt: int | None
    queue: str
    reason: str | None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    receive_count: int = 0
    problem: str | None = None
    """Why the body is not a readable envelope, if it is not."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _body(app: App, delivery: Delivery) -> bytes:
    """The envelope bytes, fetched from claim-check storage when the body is parked there."""
    claim = pointer_url(delivery.body)
    if claim is None:
        return delivery.body
    if app.claim_checks is None:
        raise EnvelopeError(f"body parked at {claim} and claim_check_url is not set")
    return app.claim_checks.get(claim)


def describe(app: App, delivery: Delivery, queue: str) -> DeadLetterInfo:
    reason = delivery.attributes.get(REASON_ATTRIBUTE)
    try:
        env = decode(_body(app, delivery))
    except CloudqError as exc:
        return DeadLetterInfo(
            message_id=delivery.message_id,
            task_id=None,
            task=delivery.attributes.get(TASK_HEADER, "?"),
            attempt=None,
            queue=queue,
            reason=reason,
            receive_count=delivery.receive_count,
            problem=str(exc),
        )
    headers = env.headers
    return DeadLetterInfo(
        message_id=delivery.message_id,
        task_id=env.id,
        task=env.task,
        attempt=env.attempt,
        queue=queue,
        reason=reason or headers.get(HEADER_DEAD_LETTER_REASON),
        error_type=headers.get(HEADER_ERROR_TYPE),
        error_message=headers.get(HEADER_ERROR_MESSAGE),
        traceback=headers.get(HEADER_ERROR_TRACEBACK),
        receive_count=delivery.receive_count,
    )


def _release(app: App, deliveries: Sequence[Delivery]) -> None:
    batch = app.broker.limits.max_batch
    for start in range(0, len(deliveries), batch):
        try:
            app.broker.release(deliveries[start : start + batch], 0)
        except CloudqError as exc:  # they come back when the short lease ends anyway
            logger.warning("could not release %d dead letter(s): %s", len(deliveries), exc)


def read_dead_letters(app: App, queue: str, limit: int) -> list[Delivery]:
    """Up to ``limit`` dead letters of ``queue``, read under a short lease and released at once:
    the one read loop behind ``dlq list`` and the dashboard's listing. The deliveries' bodies
    stay readable; their receipts are spent."""
    dlq = dead_letter_queue_name(queue)
    held: list[Delivery] = []
    try:
        while len(held) < limit:
            want = min(app.broker.limits.max_batch, limit - len(held))
            got = app.broker.receive(dlq, want, RECEIVE_WAIT_SECONDS, LIST_LEASE_SECONDS)
            if not got:
                break
            held.extend(got)
    finally:
        _release(app, held)
    return held


def list_dead_letters(app: App, queue: str, limit: int) -> list[DeadLetterInfo]:
    """Up to ``limit`` dead letters of ``queue``, described (``read_dead_letters``)."""
    return [describe(app, d, queue) for d in read_dead_letters(app, queue, limit)]


def envelope_of(app: App, delivery: Delivery) -> Envelope | None:
    """A dead letter's envelope (claim checks fetched), or None if it is not one. Never raises:
    its bytes are untrusted, and what it says is shown, never run or signed from here."""
    try:
        return decode(_body(app, delivery))
    except Exception:  # noqa: BLE001 - describe() says why
        return None


def reset(env: Envelope, queue: str) -> Envelope:
    """A fresh first attempt: attempt 1, error headers dropped, signature to be made anew."""
    headers = {k: v for k, v in env.headers.items() if k not in STRIPPED_HEADERS}
    return env.model_copy(update={"attempt": 1, "headers": headers, "sig": None, "queue": queue})


def untrusted(app: App, env: Envelope, trust_unsigned: bool = False) -> str | None:
    """Why a dead letter must not be re-signed and sent, or None (see the module docstring).

    Only the envelope's own signature counts; nothing the sender could have written does."""
    keys = app.signing_keys
    if not keys:
        return None
    if env.sig is None:
        return None if trust_unsigned else UNSIGNED
    try:
        verify(env, keys)
    except EnvelopeError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class _Ready:
    """A dead letter made ready to send: the fresh envelope and its message."""

    envelope: Envelope
    message: OutgoingMessage


def _prepare(app: App, delivery: Delivery, queue: str, trust_unsigned: bool) -> _Ready | str:
    """The dead letter as the fresh first attempt to send, or why it stays. Never raises: a
    dead letter is untrusted input (bytes, claim-check pointer, dates, signature)."""
    from cloudq.producer import to_message

    try:
        env = decode(_body(app, delivery))
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return f"not a readable envelope: {type(exc).__name__}: {exc}"
    try:
        why = untrusted(app, env, trust_unsigned)
    except Exception as exc:  # noqa: BLE001
        why = f"signature cannot be checked: {type(exc).__name__}: {exc}"
    if why is not None:
        return why
    fresh = reset(env, queue)
    try:
        # A fresh FIFO deduplication id: the original id was seen before.
        return _Ready(fresh, to_message(app, fresh, dedup_suffix=f"-r{uuid.uuid4().hex[:8]}"))
    except Exception as exc:  # noqa: BLE001 - dates that overflow, a size over the limit...
        return f"cannot be sent: {type(exc).__name__}: {exc}"


def _send_batch(app: App, batch: Sequence[_Ready]) -> None:
    """Send one batch (one queue, prepared one by one): raises on failure, nothing deleted."""
    queue = batch[0].envelope.queue
    app.ensure_queue(queue)
    app.broker.send(queue, [r.message for r in batch])


@dataclass
class RedriveResult:
    moved: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    """Message id -> why it stayed in the dead-letter queue."""


def dead_letter_depth(app: App, queue: str) -> int | None:
    """Messages in the queue's dead-letter queue now, or None if the broker cannot tell."""
    try:
        stats = app.broker.stats(queue)
    except CloudqError:
        return None
    return stats.dead_lettered


def redrive(
    app: App,
    queue: str,
    limit: int | None = None,
    update: Callable[[int], None] = lambda n: None,
    trust_unsigned: bool = False,
) -> RedriveResult:
    """Move dead letters of ``queue`` back to it as fresh first attempts; see the module doc.

    Without ``limit`` it moves as many as the dead-letter queue held at the start, so a task that
    fails again at once cannot keep a redrive going forever.
    """
    bound = limit if limit is not None else dead_letter_depth(app, queue)
    return _redrive(app, queue, bound, None, update, trust_unsigned)


def redrive_ids(
    app: App,
    queue: str,
    message_ids: Collection[str],
    update: Callable[[int], None] = lambda n: None,
    trust_unsigned: bool = False,
) -> RedriveResult:
    """Move only the dead letters whose message ids are in ``message_ids``, as ``redrive``
    moves them; the others are released untouched. Reads at most as many as the dead-letter
    queue held at the start, so it ends even if a selected one is gone (it is then listed in
    ``skipped``, as not found)."""
    wanted = set(message_ids)
    bound = max(dead_letter_depth(app, queue) or 0, len(wanted))
    result = _redrive(app, queue, bound, wanted, update, trust_unsigned)
    for message_id in wanted:  # what is left was not read
        result.skipped[message_id] = NOT_FOUND
        _log_left(queue, message_id, NOT_FOUND)
    return result


def _log_left(queue: str, message_id: str, why: str) -> None:
    logger.warning("dead letter %s left in %s: %s", message_id, dead_letter_queue_name(queue), why)


def _redrive(
    app: App,
    queue: str,
    bound: int | None,
    wanted: set[str] | None,
    update: Callable[[int], None],
    trust_unsigned: bool,
) -> RedriveResult:
    """The one redrive loop: read at most ``bound`` dead letters (None: until none is left),
    move those in ``wanted`` (None: all; each found is removed from it), keep the rest."""
    dlq = dead_letter_queue_name(queue)
    broker = app.broker
    lease = app.conf.queue_lease_seconds
    cap = broker.limits.max_lease_seconds
    if cap is not None:
        lease = min(lease, cap)
    result = RedriveResult()
    kept: list[Delivery] = []  # held until the end, so they are not read again
    seen: set[str] = set()
    read = 0
    try:
        while (bound is None or read < bound) and (wanted is None or wanted):
            want = (
                broker.limits.max_batch
                if bound is None
                else min(broker.limits.max_batch, bound - read)
            )
            got = broker.receive(dlq, want, RECEIVE_WAIT_SECONDS, lease)
            if not got:
                break
            read += len(got)
            batch: list[_Ready] = []
            originals: list[Delivery] = []
            for delivery in got:
                if wanted is not None:
                    if delivery.message_id not in wanted:
                        kept.append(delivery)
                        continue
                    wanted.discard(delivery.message_id)
                ready = _prepare(app, delivery, queue, trust_unsigned)
                if not isinstance(ready, str) and ready.envelope.id in seen:
                    ready = "dead-lettered again during this redrive"
                if isinstance(ready, str):
                    result.skipped[delivery.message_id] = ready
                    kept.append(delivery)
                    continue
                seen.add(ready.envelope.id)
                batch.append(ready)
                originals.append(delivery)
            if batch:
                _send_batch(app, batch)  # raises on failure: then nothing is deleted
                acknowledge(app, originals, broker.ack)  # parked bodies go once acked
                result.moved += len(batch)
                update(len(batch))
    finally:
        if kept:
            _release(app, kept)
    for message_id, why in result.skipped.items():
        _log_left(queue, message_id, why)
    return result
