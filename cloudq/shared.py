"""The current app and ``@shared_task``: tasks of reusable modules that name no app.

As in Celery, a shared task registers with every app, those that exist and those created later,
and the object ``@shared_task`` returns acts as the task of the *current* app: the one last
created (``set_as_current=True``, the default) or made current with ``app.set_current()``.
Apps are held weakly, so test apps that go out of scope are not kept alive here.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.task import Task

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.RLock()
_apps: weakref.WeakSet[App] = weakref.WeakSet()
_current: weakref.ref[App] | None = None
_default: App | None = None
_shared: list[tuple[Callable[..., Any], dict[str, Any]]] = []


def register_app(app: App, set_as_current: bool) -> None:
    """Called by ``App()``: the app gets every shared task defined so far."""
    with _lock:
        _apps.add(app)
        if set_as_current:
            set_current(app)
        shared = list(_shared)
    for fn, options in shared:
        app.register_shared(fn, options)


def set_current(app: App) -> None:
    global _current
    with _lock:
        _current = weakref.ref(app)


def current_app() -> App:
    """The current app; with none alive, a default one (``memory://``), as Celery does."""
    global _default
    with _lock:
        app = _current() if _current is not None else None
        if app is None:
            from cloudq.app import App

            _default = app = App("default")
        return app


class SharedTask:
    """Stands for the shared task of whichever app is current when it is used."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self._fn = fn
        self._options = options
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", repr(fn))

    def _get_current_object(self) -> Task[Any, Any]:
        return current_app().register_shared(self._fn, self._options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get_current_object(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._get_current_object()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<SharedTask {self.__name__} -> {self._get_current_object()!r}>"


@overload
def shared_task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def shared_task(fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def shared_task(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """``@shared_task`` / ``@shared_task(bind=True, ...)``: a task for every app, current or
    later; typed as the Task it stands for."""

    def register(func: Callable[P, R]) -> Task[P, R]:
        with _lock:
            _shared.append((func, dict(options)))
            apps = list(_apps)
        for app in apps:
            app.register_shared(func, options)
        return cast("Task[P, R]", SharedTask(func, options))

    if fn is not None:
        return register(fn)
    return register
