"""``task_routes`` in all of Celery's forms, compiled once into an ordered chain of routers.

A router is a mapping (task name, glob such as ``shop.mail.*``, or ``re.compile(...)`` key →
queue name or ``{"queue": ...}``), a function ``(name, args, kwargs, options, task=None, **kw)``
returning one of those or None, or an import path to such a function. The first router with an
answer wins, as in Celery. Routing is by queue only: exchanges and routing keys have no meaning
on cloud queues, so a route naming no queue is an error.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cloudq.errors import ConfigurationError

if TYPE_CHECKING:
    from cloudq.app import App

RouterFn = Callable[..., Any]


def route_queue(route: Any, where: str) -> str | None:
    """The queue a route names: a string, ``{"queue": name}`` (or a kombu-like object with a
    ``name``), None for "no answer"."""
    if route is None:
        return None
    if isinstance(route, Mapping):
        if "queue" not in route:
            raise ConfigurationError(
                f"{where}: route {dict(route)!r} names no queue; cloudq routes by queue only "
                "(exchanges and routing keys have no meaning on cloud queues): give "
                "{'queue': 'name'}"
            )
        route = route["queue"]
    name = getattr(route, "name", route)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: a route must name a queue, got {route!r}")
    return name


def _regex_matcher(rx: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda name: rx.match(name) is not None  # Celery's: anchored at the start only


def _glob_matcher(glob: str) -> Callable[[str], bool]:
    return lambda name: fnmatch.fnmatchcase(name, glob)


class MapRouter:
    """Exact names first, then globs and regexes in the order given (Celery's ``MapRoute``)."""

    def __init__(self, mapping: Mapping[Any, Any] | Sequence[tuple[Any, Any]]) -> None:
        self.exact: dict[str, str] = {}
        self.patterns: list[tuple[Callable[[str], bool], str]] = []
        self.static: dict[str, str] = {}
        pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
        for key, route in pairs:
            queue = route_queue(route, f"task_routes[{key!r}]")
            assert queue is not None
            if isinstance(key, re.Pattern):
                self.patterns.append((_regex_matcher(key), queue))
                self.static[f"re:{key.pattern}"] = queue
            elif isinstance(key, str):
                if any(c in key for c in "*?["):
                    self.patterns.append((_glob_matcher(key), queue))
                else:
                    self.exact[key] = queue
                self.static[key] = queue
            else:
                raise ConfigurationError(
                    f"task_routes key {key!r}: give a task name, a glob or re.compile(...)"
                )

    def __call__(self, name: str, *_: Any, **__: Any) -> str | None:
        if name in self.exact:
            return self.exact[name]
        for matches, queue in self.patterns:
            if matches(name):
                return queue
        return None


def _import_router(path: str) -> RouterFn:
    module, _, attr = path.replace(":", ".").rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"task_routes: cannot import router {path!r}: {exc}") from None
    if not callable(fn):
        raise ConfigurationError(f"task_routes: router {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


class Routes(dict[str, str]):
    """The compiled chain. As a dict it holds the statically known entries (name or glob →
    queue), so code listing an app's queues reads ``.values()``; ``route()`` asks the chain."""

    def __init__(self, routers: Sequence[RouterFn | MapRouter] = (), source: Any = None) -> None:
        super().__init__()
        self.routers = list(routers)
        self.source: Any = {} if source is None else source
        """What was assigned; a mapping can be changed in place (``routes["x"] = "q"``)."""
        for router in self.routers:
            if isinstance(router, MapRouter):
                for key, queue in router.static.items():
                    self.setdefault(key, queue)

    def _replace(self, change: Callable[[dict[Any, Any]], None]) -> None:
        if not isinstance(self.source, Mapping):
            raise ConfigurationError(
                "task_routes is a list of routers: assign app.conf.task_routes = [...] anew "
                "to change it"
            )
        source = dict(self.source)
        change(source)
        fresh = compile_routes(source)
        self.routers, self.source = fresh.routers, fresh.source
        dict.clear(self)
        dict.update(self, fresh)

    def __setitem__(self, key: Any, route: Any) -> None:
        self._replace(lambda source: source.__setitem__(key, route))

    def __delitem__(self, key: Any) -> None:
        self._replace(lambda source: source.__delitem__(key))

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._replace(lambda source: source.update(*args, **kwargs))

    def route(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        task: Any = None,
    ) -> str | None:
        """The first router's queue for this call, or None (use the default queue)."""
        for router in self.routers:
            if isinstance(router, MapRouter):
                found = router(name)
            else:
                found = route_queue(
                    router(name, args, dict(kwargs or {}), dict(options or {}), task=task),
                    f"router {getattr(router, '__name__', router)!r} for {name!r}",
                )
            if found is not None:
                return found
        return None


def _is_pairs(item: Any) -> bool:
    return isinstance(item, list | tuple) and all(
        isinstance(pair, tuple) and len(pair) == 2 for pair in item
    )


def compile_routes(value: Any) -> Routes:
    """Any of Celery's ``task_routes`` forms → Routes (errors name the bad entry)."""
    if isinstance(value, Routes):
        return value
    if value is None:
        return Routes()
    items = list(value) if isinstance(value, list | tuple) else [value]
    routers: list[RouterFn | MapRouter] = []
    for item in items:
        if isinstance(item, Mapping) or _is_pairs(item):
            routers.append(MapRouter(item))  # a list of (pattern, route): in that order
        elif isinstance(item, str):
            routers.append(_import_router(item))
        elif callable(item):
            routers.append(item)
        else:
            raise ConfigurationError(
                f"task_routes: {item!r} is not a router; give a dict, a function "
                "(name, args, kwargs, options, task=None, **kw) or a list of those"
            )
    return Routes(routers, source=value)


def app_queues(app: App) -> list[str]:
    """Every queue the app sends to that is known without a call: the default queue first, then
    the queues tasks name, then the static routes' targets; each once. A router function's
    queues are known only when it runs, so they are never here."""
    names = [app.conf.task_default_queue]
    names += sorted({t.options.queue for t in app.tasks.values() if t.options.queue})
    names += sorted(set(app.conf.task_routes.values()))
    return list(dict.fromkeys(names))
