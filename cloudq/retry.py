"""Retry arithmetic: exact exponential backoff, optional full jitter, a cap."""

from __future__ import annotations

import random

from cloudq.envelope import RetryPolicy


def retries_left(policy: RetryPolicy, attempt: int) -> bool:
    """Whether the attempt that just failed may be followed by another."""
    return policy.max_retries is None or attempt <= policy.max_retries


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed ``attempt`` (1-based) before the next one.

    With backoff on: ``backoff * 2**(attempt-1)`` capped at ``backoff_max`` (1, 2, 4, 8 s for
    backoff=1). Off: ``default_delay``. Jitter draws uniformly from 0 to that delay.
    """
    if policy.backoff > 0:
        delay = min(policy.backoff * 2.0 ** (attempt - 1), policy.backoff_max)
    else:
        delay = policy.default_delay
    if policy.jitter:
        delay = float((rng or random).uniform(0, delay))
    return delay
