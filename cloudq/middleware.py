"""The hook bus: middleware called at every step of a task's life (dramatiq's broker hooks).

Subclass ``Middleware`` and override the hooks you need; give instances to
``App(..., middleware=[...])`` or ``app.add_middleware(m)``. Each hook is called with the app
and keyword arguments, in the order the middleware was added, at the same step in ``cloudq
worker`` (both pools), in eager mode and in the three serverless handlers:

==================  ==========================================================================
``before_publish``  a task is about to be sent: ``envelope``, ``queue``, ``headers`` (a dict of
                    str -> str that the message carries: add trace context here)
``after_publish``   it was sent: ``envelope``, ``queue``
``received``        a delivery was opened and verified: ``envelope``, ``delivery`` (None eager)
``before_execute``  the task is about to run: ``envelope``, ``task``, ``request``, ``headers``
                    (a dict: what is added there travels with the run's retry; the trace
                    context in it, ``TRACE_CONTEXT_HEADERS``, with its chain links, chord
                    body and error callbacks too; ``request.headers`` stay as they came)
``after_execute``   it returned or raised: ``envelope``, ``task``, ``request``, ``state``
                    (SUCCESS, RETRY, FAILURE, IGNORED...), ``result``, ``exception``
``retry``           a retry was scheduled: ``envelope``, ``task``, ``exception``, ``eta``
``dead_letter``     a message is going to the dead-letter queue: ``envelope`` (None when it
                    could not be read), ``delivery``, ``reason``
``revoked``         a revoked or expired task was acknowledged unrun (or stopped):
                    ``envelope``, ``terminated``, ``expired``
``rejected``        a delivery that is not a task we run (undecodable, bad signature):
                    ``delivery``, ``reason``
``worker_start``    a worker is starting: ``worker``
``process_start``   a process that runs tasks is ready: a pool child, a serverless container
``process_stop``    a pool child is exiting: ``pid``, ``exitcode``
``worker_ready``    the worker receives: ``worker``
``worker_stop``     the worker has stopped: ``worker``
``beat_start``      beat is starting: ``beat``
``invocation_end``  a serverless handler's batch is done (its metrics flush): ``platform``
==================  ==========================================================================

``add_everywhere(m)`` puts a middleware on every app's bus, existing and future ones (what a
process-wide instrumentation such as ``cloudq.contrib.opentelemetry`` needs).

A hook that raises is logged and the task goes on: a middleware never loses a message. With
no middleware overriding a hook (and no receiver on the Celery signal it feeds), emitting it
costs one dict lookup.
"""

from __future__ import annotations

import importlib
import os
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from cloudq.errors import ConfigurationError
from cloudq.logsafe import get_logger

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.middleware")

HOOKS = (
    "before_publish",
    "after_publish",
    "received",
    "before_execute",
    "after_execute",
    "retry",
    "dead_letter",
    "revoked",
    "rejected",
    "worker_start",
    "process_start",
    "process_stop",
    "worker_ready",
    "worker_stop",
    "beat_start",
    "invocation_end",
)


class Middleware:
    """Base class: every hook does nothing. ``wants(hook)`` may narrow, at run time, which
    hooks are called (the Celery signals bridge asks for a hook only while a receiver is
    connected); call ``refresh_hooks()`` when its answer changes."""

    def wants(self, hook: str) -> bool:
        return True

    def before_publish(self, app: App, **kwargs: Any) -> None: ...
    def after_publish(self, app: App, **kwargs: Any) -> None: ...
    def received(self, app: App, **kwargs: Any) -> None: ...
    def before_execute(self, app: App, **kwargs: Any) -> None: ...
    def after_execute(self, app: App, **kwargs: Any) -> None: ...
    def retry(self, app: App, **kwargs: Any) -> None: ...
    def dead_letter(self, app: App, **kwargs: Any) -> None: ...
    def revoked(self, app: App, **kwargs: Any) -> None: ...
    def rejected(self, app: App, **kwargs: Any) -> None: ...
    def worker_start(self, app: App, **kwargs: Any) -> None: ...
    def process_start(self, app: App, **kwargs: Any) -> None: ...
    def process_stop(self, app: App, **kwargs: Any) -> None: ...
    def worker_ready(self, app: App, **kwargs: Any) -> None: ...
    def worker_stop(self, app: App, **kwargs: Any) -> None: ...
    def beat_start(self, app: App, **kwargs: Any) -> None: ...
    def invocation_end(self, app: App, **kwargs: Any) -> None: ...


POOL_MIDDLEWARE_ENV = "CLOUDQ_POOL_MIDDLEWARE"
"""Comma-separated ``module:factory`` paths: middleware that a worker's processes-pool children
add to the app they import. Worker options (``--metrics-port``) set it in the worker's
environment before the children are spawned; the children inherit it."""


def pass_to_pool_children(factory: str) -> None:
    """Have every pool child started from now on add ``factory()`` (``module:callable``)."""
    known = [f for f in os.environ.get(POOL_MIDDLEWARE_ENV, "").split(",") if f]
    if factory not in known:
        os.environ[POOL_MIDDLEWARE_ENV] = ",".join([*known, factory])


def add_inherited(app: App) -> None:
    """In a pool child: add the middleware its worker passed (``POOL_MIDDLEWARE_ENV``), except
    of a type the app's own module already added."""
    for path in filter(None, os.environ.get(POOL_MIDDLEWARE_ENV, "").split(",")):
        module, _, name = path.partition(":")
        try:
            item = getattr(importlib.import_module(module), name)()
        except Exception:
            logger.exception("pool middleware %s failed; the child runs without it", path)
            continue
        if not any(type(m) is type(item) for m in app.hooks.middleware):
            app.add_middleware(item)


_buses: weakref.WeakSet[Hooks] = weakref.WeakSet()
_everywhere: list[object] = []
"""Middleware every app's bus calls, after the signals bridge and before the app's own."""


def refresh_hooks() -> None:
    """Recompute every app's call lists (after a middleware's ``wants`` changed)."""
    for bus in list(_buses):
        bus.refresh()


def add_everywhere(item: object) -> None:
    """Call ``item`` on every app's bus, existing and future ones: process-wide
    instrumentation (OpenTelemetry's ``instrument()`` takes no app)."""
    Hooks._check(item)
    if not any(existing is item for existing in _everywhere):
        _everywhere.append(item)
        refresh_hooks()


def remove_everywhere(item: object) -> None:
    """Undo ``add_everywhere``."""
    _everywhere[:] = [existing for existing in _everywhere if existing is not item]
    refresh_hooks()


def _overrides(middleware: object, hook: str) -> bool:
    method = getattr(type(middleware), hook, None)
    return callable(method) and method is not getattr(Middleware, hook, None)


class Hooks:
    """An app's middleware and, per hook, the bound methods to call."""

    def __init__(self, app: App, middleware: Iterable[object] = ()) -> None:
        from cloudq.reports import ErrorReports
        from cloudq.signals import bridge

        self._app = app
        self._builtin: tuple[object, ...] = (bridge(), ErrorReports())
        self._middleware: list[object] = []
        """The app's own, in the order added."""
        self._calls: dict[str, tuple[Callable[..., Any], ...]] = {}
        for item in middleware:
            self._check(item)
            self._middleware.append(item)
        self.refresh()
        _buses.add(self)

    @property
    def middleware(self) -> list[object]:
        """The middleware called, in call order: the built-ins (the signals bridge, error
        reports), then what ``add_everywhere`` added, then the app's own."""
        return [*self._builtin, *_everywhere, *self._middleware]

    @staticmethod
    def _check(item: object) -> None:
        if isinstance(item, type):
            raise ConfigurationError(f"middleware {item.__name__}: pass an instance, not the class")
        if not any(_overrides(item, hook) for hook in HOOKS):
            raise ConfigurationError(
                f"middleware {item!r} has none of the hooks ({', '.join(HOOKS)}): "
                "subclass cloudq.middleware.Middleware and override the ones you need"
            )

    def add(self, item: object) -> None:
        self._check(item)
        self._middleware.append(item)
        self.refresh()

    def refresh(self) -> None:
        calls: dict[str, tuple[Callable[..., Any], ...]] = {}
        for hook in HOOKS:
            found = []
            for item in self.middleware:
                wants = getattr(item, "wants", None)
                if _overrides(item, hook) and (wants is None or wants(hook)):
                    found.append(getattr(item, hook))
            calls[hook] = tuple(found)
        self._calls = calls

    def active(self, hook: str) -> bool:
        """Whether anything listens to ``hook`` (to skip building costly arguments)."""
        return bool(self._calls[hook])

    def emit(self, hook: str, **kwargs: Any) -> None:
        """Call each middleware's ``hook``; one that raises is logged and the rest still run."""
        calls = self._calls[hook]
        if not calls:
            return
        for call in calls:
            try:
                call(self._app, **kwargs)
            except Exception:
                owner = type(getattr(call, "__self__", call)).__name__
                logger.exception("middleware %s.%s raised; the task goes on", owner, hook)
