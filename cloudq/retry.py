"""Retry arithmetic: exact exponential backoff, optional full jitter, a cap, a bound."""

from __future__ import annotations

import math
import random

from cloudq.envelope import RetryPolicy
from cloudq.errors import MaxRetriesExceededError

MAX_RETRY_DELAY_SECONDS = 366 * 24 * 3600.0
"""The longest wait before a retry (a year). Longer (``retry(countdown=1e12)``, or a policy
from a message asking the absurd) is dead-lettered with its reason, not clamped: a retry
nobody asked for would run at a time nobody chose, and one millennia away would hop through
the queue forever; the dead letter keeps the message and says what to fix."""

_MAX_DOUBLINGS = 1_000
"""``2.0 ** 1024`` overflows a float: past this many doublings the delay is capped anyway."""


def retries_left(policy: RetryPolicy, attempt: int) -> bool:
    """Whether the attempt that just failed may be followed by another."""
    return policy.max_retries is None or attempt <= policy.max_retries


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed ``attempt`` (1-based) before the next one.

    With backoff on: ``backoff * 2**(attempt-1)`` capped at ``backoff_max`` (1, 2, 4, 8 s for
    backoff=1). Off: ``default_delay``. Jitter draws uniformly from 0 to that delay.
    """
    if policy.backoff > 0:
        doublings = min(attempt - 1, _MAX_DOUBLINGS)
        delay = min(policy.backoff * 2.0**doublings, policy.backoff_max)
    else:
        delay = policy.default_delay
    if policy.jitter:
        delay = float((rng or random).uniform(0, delay))
    return delay


def delay_out_of_range(delay: float) -> str | None:
    """Why a retry cannot wait ``delay`` seconds, or None if it can."""
    if math.isfinite(delay) and delay <= MAX_RETRY_DELAY_SECONDS:
        return None
    return f"retry delay {delay}s is out of range (at most {MAX_RETRY_DELAY_SECONDS:.0f}s)"


def max_retries_exceeded(task: str, task_id: str | None, attempt: int) -> MaxRetriesExceededError:
    """What ``self.retry()`` raises (or records) when the attempt was the last allowed."""
    return MaxRetriesExceededError(
        f"{task}[{task_id}] asked to retry after attempt {attempt}, the last allowed"
    )
