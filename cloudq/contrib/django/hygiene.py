"""Database connection hygiene around tasks, as Celery's ``DjangoWorkerFixup``.

Django closes a request's connections when the request ends; a worker has no requests, so a
connection would live until the database drops it and the next task would fail on it.
``close_old_connections()`` before and after each task closes those past ``CONN_MAX_AGE`` or
left unusable by an error, in both pools and in the serverless handlers (the hooks run in all
of them). Eager runs (``task.apply()``, ``task_always_eager``) are left alone: they run inside
the caller's request and perhaps its transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudq.logsafe import get_logger
from cloudq.middleware import Middleware

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.contrib.django.hygiene")


def _close_old(request: Any) -> None:
    if request is not None and getattr(request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


class DjangoConnections(Middleware):
    """``django.setup()`` where tasks run; ``close_old_connections`` around each task."""

    def worker_start(self, app: App, **kwargs: Any) -> None:
        from cloudq.contrib.django.fixup import setup_django

        setup_django()

    def process_start(self, app: App, **kwargs: Any) -> None:
        """A pool child or a serverless container: set Django up, drop any connection it
        inherited (a connection is never shared between processes)."""
        from cloudq.contrib.django.fixup import setup_django

        setup_django()
        from django.db import connections

        for conn in connections.all(initialized_only=True):
            conn.close()

    def before_execute(self, app: App, **kwargs: Any) -> None:
        _close_old(kwargs.get("request"))

    def after_execute(self, app: App, **kwargs: Any) -> None:
        _close_old(kwargs.get("request"))
