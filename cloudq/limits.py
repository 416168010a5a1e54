"""Rate and time limits: parsing and defaults (enforcement across workers is in ``ratelimit``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloudq.errors import ConfigurationError

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_UNIT_SECONDS |= {"h": 3600, "hour": 3600}


@dataclass(frozen=True)
class RateLimit:
    """``count`` tasks per ``per_seconds``."""

    count: float
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds


def parse_rate_limit(text: str) -> RateLimit:
    """Celery's notation: ``"10/s"``, ``"100/m"``, ``"1000/h"``."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"rate limit {text!r} is not of the form N/s, N/m or N/h with N > 0 (e.g. '10/s')"
        )
    return RateLimit(float(match.group(1)), _UNIT_SECONDS[match.group(2)])
