"""Revoked task ids, shared by every worker and handler (``cloudq.revoke``).

Without it ``revoke`` is refused with an error naming ``result_backend``, and workers run
with no revoked ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["RevokeStore"]


@runtime_checkable
class RevokeStore(Protocol):
    """Revoked task ids, each live for a time to live (``cloudq.revoke``)."""

    def revoke_add(self, task_ids: Sequence[str], ttl_seconds: float) -> None:
        """Record ``task_ids`` as revoked for ``ttl_seconds`` (again: the expiry moves on)."""
        ...

    def revoke_list(self) -> list[str]:
        """The revoked ids still live, in no particular order."""
        ...
