"""Old name of ``cloudq.rate_limits``: ``cloudq.execute`` still imports it from here (remove
once it imports ``cloudq.rate_limits``)."""

from __future__ import annotations

from cloudq.rate_limits import RATE_SLOT_HEADER

__all__ = ["RATE_SLOT_HEADER"]
