"""Old name of the rate-limit notation, now in ``cloudq.rate_limits``: ``cloudq.task`` still
imports it from here (remove once it imports ``cloudq.rate_limits``)."""

from __future__ import annotations

from cloudq.rate_limits import RateLimit, parse_rate_limit

__all__ = ["RateLimit", "parse_rate_limit"]
