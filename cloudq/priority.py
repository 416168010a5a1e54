"""``priority=`` on cloud queues: a few fixed levels, each a sub-queue the worker drains first.

No cloud queue orders by a per-message priority (SQS, Pub/Sub and Service Bus deliver in their
own order), so, as kombu does for Redis and SQS, each queue gets sub-queues: ``orders`` holds
level 0 (no priority, or 0-3), ``orders-prio1`` level 1 (4-6), ``orders-prio2`` level 2 (7-9).
Higher numbers are more urgent, as in Celery's AMQP brokers (0-9). A worker serving ``-Q
orders,bulk`` scans ``orders-prio2, orders-prio1, orders, bulk-prio2, ...``: the worker's
queue-order rule, with its anti-starvation rounds, so a flood of urgent tasks delays the others
but never starves them.

Three levels, not ten: each level is one more queue to create and one more receive call per
worker round (SQS bills empty receives; each Pub/Sub subscription and Service Bus entity counts
against quotas), and "urgent / normal / not urgent" is what priorities are used for in
practice. The count is fixed: changing it would rename sub-queues and strand their messages.

Off by default (``task_priority_queues=False``): turning it on adds queues that Terraform and
permissions must know of. Off, ``priority=`` is kept in the envelope (``request.delivery_info``)
and a warning says once per process that it orders nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cloudq.adapters.wire import FIFO_SUFFIX, PRIORITY_SUFFIX, is_fifo
from cloudq.errors import ConfigurationError
from cloudq.logsafe import get_logger

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.priority")

LEVELS = 3
"""Levels per queue: 0 is the queue itself, 1 and 2 its sub-queues."""
MAX_PRIORITY = 9
"""``priority=`` takes 0-9 (Celery's range for its emulated priorities)."""

_warned = False


def level(priority: int | None) -> int:
    """The level of ``priority``: 0 for None. Out-of-range values (from a message, untrusted)
    are clamped, never raised on: a retry of a forged message must not fail to send."""
    if priority is None:
        return 0
    clamped = min(max(int(priority), 0), MAX_PRIORITY)
    return clamped * LEVELS // (MAX_PRIORITY + 1)


def sub_queue(queue: str, lvl: int) -> str:
    """The name of ``queue``'s level ``lvl`` (``.fifo`` stays last, as SQS requires)."""
    if lvl == 0:
        return queue
    if is_fifo(queue):
        return f"{queue[: -len(FIFO_SUFFIX)]}{PRIORITY_SUFFIX}{lvl}{FIFO_SUFFIX}"
    return f"{queue}{PRIORITY_SUFFIX}{lvl}"


def levels_of(queue: str) -> list[str]:
    """``queue``'s sub-queues, most urgent first, the queue itself last."""
    return [sub_queue(queue, lvl) for lvl in reversed(range(LEVELS))]


def enabled(app: App) -> bool:
    return bool(app.conf.task_priority_queues)


def expand(app: App, queues: Sequence[str]) -> list[str]:
    """A worker's or the deployment's queue list with each queue's sub-queues in front of it
    (unchanged when priority queues are off); each name once."""
    if not enabled(app):
        return list(dict.fromkeys(queues))
    return list(dict.fromkeys(name for queue in queues for name in levels_of(queue)))


def check(app: App, priority: int | None) -> None:
    """Refuse a caller's out-of-range ``priority`` when priorities are on (a clear error at
    ``apply_async``, instead of a silent clamp)."""
    if priority is None or not enabled(app):
        return
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigurationError(f"priority must be an int 0-{MAX_PRIORITY}, got {priority!r}")
    if not 0 <= priority <= MAX_PRIORITY:
        raise ConfigurationError(
            f"priority={priority}: cloudq's priorities are 0-{MAX_PRIORITY} "
            "(higher runs first), bucketed into "
            f"{LEVELS} levels"
        )


def send_queue(app: App, queue: str, priority: int | None) -> str:
    """The queue an envelope for ``queue`` with ``priority`` is sent to."""
    if enabled(app):
        return sub_queue(queue, level(priority))
    global _warned
    if priority is not None and not _warned:
        _warned = True
        logger.warning(
            "priority=%s orders nothing while task_priority_queues is off: set it (and "
            "create the sub-queues, see cloudq.priority) to have urgent tasks run first",
            priority,
        )
    return queue
