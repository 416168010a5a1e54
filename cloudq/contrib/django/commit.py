"""Run a callable when the current database transaction commits, if Django is in use."""

from __future__ import annotations

import sys
from collections.abc import Callable


def django_configured() -> bool:
    """Whether this process uses Django with settings: judged without importing Django (a
    Django process has imported ``django.conf`` long before a task is sent)."""
    conf = sys.modules.get("django.conf")
    return conf is not None and bool(conf.settings.configured)


def on_commit(send: Callable[[], object]) -> None:
    """``transaction.on_commit(send)`` under Django: called after the outermost ``atomic``
    block commits, dropped if it rolls back, called now outside one (autocommit). Without
    Django there is no transaction to wait for: ``send()`` now."""
    if not django_configured():
        send()
        return
    from django.db import transaction

    transaction.on_commit(send)
