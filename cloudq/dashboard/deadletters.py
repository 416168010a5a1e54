"""Dead letters for the dashboard: listed with their arguments, redriven all or by selection.

Built from ``cloudq.control.redrive``'s own steps, so the trust rules are the ones of ``cloudq
dlq redrive``: each dead letter is prepared by its ``_prepare`` (decoded, its signature checked
when ``signing_keys`` are set, reset to a fresh first attempt, re-signed), sent before it is
deleted, and anything that cannot be proven or sent stays with its reason. Redriving everything
calls ``redrive`` itself; only the selection (which the command has no flag for) is new here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery, dead_letter_queue_name
from cloudq.claimcheck import acknowledge
from cloudq.control.redrive import (
    LIST_LEASE_SECONDS,
    RECEIVE_WAIT_SECONDS,
    DeadLetterInfo,
    RedriveResult,
    _body,
    _prepare,
    _Ready,
    _release,
    _send_batch,
    dead_letter_depth,
    describe,
)
from cloudq.envelope import decode
from cloudq.logsafe import get_logger

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.dashboard.deadletters")

ARGS_CHARS = 500
"""Arguments are shown as a repr cut to this length: a page, not a data dump."""


@dataclass(frozen=True)
class DeadLetterRow:
    info: DeadLetterInfo
    args: str | None
    """The repr of args and kwargs (untrusted: escaped by the templates), None if unreadable."""

    def as_dict(self) -> dict[str, Any]:
        return {**self.info.as_dict(), "args": self.args}


def _args(app: App, delivery: Delivery) -> str | None:
    try:
        env = decode(_body(app, delivery))
    except Exception:  # noqa: BLE001 - its problem is in the DeadLetterInfo already
        return None
    text = f"args={env.args!r} kwargs={env.kwargs!r}"
    return text if len(text) <= ARGS_CHARS else text[: ARGS_CHARS - 3] + "..."


def list_rows(app: App, queue: str, limit: int) -> list[DeadLetterRow]:
    """Up to ``limit`` dead letters read under a short lease and released at once (as
    ``list_dead_letters``), each with its arguments."""
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
    return [DeadLetterRow(describe(app, d, queue), _args(app, d)) for d in held]


def redrive_selected(
    app: App,
    queue: str,
    message_ids: Collection[str],
    update: Callable[[int], None] = lambda n: None,
    trust_unsigned: bool = False,
) -> RedriveResult:
    """Move the dead letters whose message ids are in ``message_ids`` back to ``queue``, as
    ``redrive`` moves them; the others are released untouched. Reads at most as many as the
    dead-letter queue held at the start, so it ends even if a selected one is gone."""
    wanted = set(message_ids)
    dlq = dead_letter_queue_name(queue)
    broker = app.broker
    lease = app.conf.queue_lease_seconds
    cap = broker.limits.max_lease_seconds
    if cap is not None:
        lease = min(lease, cap)
    depth = dead_letter_depth(app, queue)
    bound = max(depth or 0, len(wanted))
    result = RedriveResult()
    kept: list[Delivery] = []
    read = 0
    try:
        while wanted and read < bound:
            got = broker.receive(dlq, broker.limits.max_batch, RECEIVE_WAIT_SECONDS, lease)
            if not got:
                break
            read += len(got)
            batch: list[_Ready] = []
            originals: list[Delivery] = []
            for delivery in got:
                if delivery.message_id not in wanted:
                    kept.append(delivery)
                    continue
                wanted.discard(delivery.message_id)
                ready = _prepare(app, delivery, queue, trust_unsigned)
                if isinstance(ready, str):
                    result.skipped[delivery.message_id] = ready
                    kept.append(delivery)
                    continue
                batch.append(ready)
                originals.append(delivery)
            if batch:
                _send_batch(app, batch)  # raises on failure: then nothing is deleted
                acknowledge(app, originals, broker.ack)
                result.moved += len(batch)
                update(len(batch))
    finally:
        if kept:
            _release(app, kept)
    for message_id in wanted:
        result.skipped[message_id] = "not found in the dead-letter queue (moved or purged?)"
    for message_id, why in result.skipped.items():
        logger.warning("dead letter %s left in %s: %s", message_id, dlq, why)
    return result
