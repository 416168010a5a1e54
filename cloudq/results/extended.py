"""``result_extended``: a record also keeps its task's arguments and queue, as Celery's does.

``execute`` opens a scope per delivery when the setting is on; every record it builds for that
envelope (success, failure, retry, revoked) takes the arguments from the scope. A context
variable rather than a parameter: records are built in a dozen places, and the setting is
read once per delivery, not at each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from cloudq.envelope import Envelope
from cloudq.results.base import EXTENDED_ARGS_BYTES

_SCOPE: ContextVar[tuple[Envelope, str] | None] = ContextVar("cloudq_result_extended", default=None)


@contextmanager
def extended(envelope: Envelope, queue: str) -> Iterator[None]:
    """Records built for ``envelope`` in this block keep its arguments and ``queue``."""
    token = _SCOPE.set((envelope, queue))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def fields(envelope: Envelope) -> dict[str, Any]:
    """The extended fields of a record of ``envelope``: none outside its scope."""
    scope = _SCOPE.get()
    if scope is None or scope[0].id != envelope.id:
        return {}
    queue = scope[1]
    size = len(json.dumps([envelope.args, envelope.kwargs], default=str))
    if size > EXTENDED_ARGS_BYTES:
        note = f"{size} bytes of arguments: over the {EXTENDED_ARGS_BYTES} that records keep"
        return {"queue": queue, "args_omitted": note}
    return {"queue": queue, "args": list(envelope.args), "kwargs": dict(envelope.kwargs)}
