"""Old name of ``cloudq.time_limits``: ``cloudq.execute`` still imports it from here (remove
once it imports ``cloudq.time_limits``)."""

from __future__ import annotations

from cloudq.time_limits import run_with_limits

__all__ = ["run_with_limits"]
