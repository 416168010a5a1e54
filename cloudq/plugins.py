"""Entry-point lookup for adapters, result backends and claim-check stores.

``importlib.metadata`` is imported on the first lookup, not with cloudq: it costs about 20 ms,
and an app opens its broker on first use, often not at all before a Lambda handles its event.
"""

from __future__ import annotations

from typing import Any


def load_plugin(group: str, scheme: str) -> Any | None:
    """The object registered as ``scheme`` in entry-point ``group``, or None."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=group, name=scheme):
        return ep.load()
    return None
