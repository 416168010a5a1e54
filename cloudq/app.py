"""The App: settings, the task registry, routing, and the broker and backend it opens lazily."""

from __future__ import annotations

import fnmatch
import importlib
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from cloudq.adapters import open_broker
from cloudq.adapters.base import Broker, QueueSpec
from cloudq.adapters.urls import redact_url
from cloudq.adapters.wire import is_fifo
from cloudq.app_signals import Signal
from cloudq.claimcheck import ClaimCheckStore, open_claim_check_store
from cloudq.clock import SYSTEM_CLOCK, Clock
from cloudq.config import Settings, make_settings
from cloudq.envelope import Envelope
from cloudq.errors import ConfigurationError, NotRegistered
from cloudq.logsafe import get_logger
from cloudq.middleware import Hooks
from cloudq.rate_limits import LocalRateLimiter
from cloudq.result import AsyncResult
from cloudq.results import ResultBackend, open_backend
from cloudq.routes import Routes
from cloudq.stores.chords import ChordStore
from cloudq.stores.rate_slots import RateLimiter
from cloudq.task import Task, TaskOptions

if TYPE_CHECKING:
    from cloudq.beat import ScheduleEntry
    from cloudq.canvas import Signature
    from cloudq.control.commands import Control
    from cloudq.reports import FailureReport, Reporter
    from cloudq.result import AsyncResult as _AsyncResult
    from cloudq.schedules import BaseSchedule
    from cloudq.task import Task as _Task

logger = get_logger("cloudq.app")

P = ParamSpec("P")
R = TypeVar("R")


class TaskRegistry(dict[str, Task[Any, Any]]):
    """``app.tasks``: a lookup that misses finalizes the app once (imports ``include`` and
    autodiscovered modules) and looks again, so a worker finds tasks of modules nobody imported
    yet, as Celery's does. A hit costs what a dict lookup costs."""

    def __init__(self, finalize: Callable[[], bool]) -> None:
        super().__init__()
        self._finalize = finalize

    def _finalized_now(self) -> bool:
        """Finalize on a miss. The name may come from a message, so a failure (a broken
        include, a failing receiver) is logged, not raised: the lookup just misses, and the
        next miss tries again."""
        try:
            return self._finalize()
        except Exception as exc:
            logger.error("could not finalize the app: %s", exc, exc_info=True)
            return False

    def __missing__(self, name: str) -> Task[Any, Any]:
        if self._finalized_now() and dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        raise KeyError(name)

    def get(self, name: str, default: None = None) -> Task[Any, Any] | None:  # type: ignore[override]
        task = dict.get(self, name)
        if task is None and self._finalized_now():
            task = dict.get(self, name)
        return task


class App:
    """``App("shop", broker="sqs://", backend="redis://localhost")``: Celery's ``Celery(...)``."""

    def __init__(
        self,
        main: str | None = None,
        broker: str | None = None,
        backend: str | None = None,
        *,
        include: Iterable[str] | None = None,
        config_source: Any = None,
        namespace: str | None = None,
        set_as_current: bool = True,
        clock: Clock | None = None,
        middleware: Iterable[object] = (),
        **settings: Any,
    ) -> None:
        """Celery's keywords, and any setting in Celery's or cloudq's name.

        :param main: the app's name; tasks defined in ``__main__`` are named after it.
        :param broker: the broker URL (``sqs://``, ``pubsub://``, ``servicebus://``,
            ``memory://``): the ``broker_url`` setting.
        :param backend: the result backend URL (``redis://``, ``dynamodb://``...): the
            ``result_backend`` setting; None keeps no results.
        :param include: modules imported at finalize, so their tasks register.
        :param config_source: an object or module path read as ``config_from_object`` does.
        :param namespace: the prefix of ``config_source``'s setting names (``CELERY``).
        :param set_as_current: make this the current app (``shared_task`` binds to it).
        :param clock: the wall and monotonic clock (``cloudq.clock.FakeClock`` in tests).
        :param middleware: hook objects (``cloudq.middleware.Middleware``) called at each step
            of a task's life.
        :param settings: any other setting, by Celery's or cloudq's name (``cloudq.config``).
        """
        if broker is not None:
            settings["broker_url"] = broker
        if backend is not None:
            settings["result_backend"] = backend
        if include is not None:
            settings["include"] = list(include)
        self.main = main or "cloudq"
        self._named = main is not None
        """Tasks defined in ``__main__`` are named after ``main`` (Celery's gen_task_name)."""
        self.conf: Settings = make_settings(settings)
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.hooks = Hooks(self, middleware)
        self.tasks: TaskRegistry = TaskRegistry(self.finalize)
        self._ensured: set[str] = set()
        self._periodic: dict[str, ScheduleEntry] = {}
        self._lock = threading.Lock()
        self._finalize_lock = threading.RLock()
        self._finalized = False
        self._discover: list[tuple[Any, str]] = []
        self.discover_default: Callable[[], Iterable[str]] | None = None
        """What ``autodiscover_tasks()`` without packages imports; None: the config object's
        ``INSTALLED_APPS``. The Django fixup sets it to the names in Django's app registry."""
        self._config_source: Any = None
        self._declared: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}
        """Task name -> (function, options as declared), to re-derive options when
        ``task_annotations`` or ``task_ignore_result`` change."""
        self._shared_tasks: dict[Callable[..., Any], Task[Any, Any]] = {}
        self.on_configure = Signal("on_configure")
        self.on_after_configure = Signal("on_after_configure")
        self.on_after_finalize = Signal("on_after_finalize")
        self.conf._on_change = self._setting_changed
        from cloudq.canvas_tasks import register_builtins

        register_builtins(self)  # cloudq.group, cloudq.map, cloudq.starmap: the canvas's own
        if config_source is not None:
            self.config_from_object(config_source, namespace=namespace)
        from cloudq.shared import register_app

        register_app(self, set_as_current)

    def __repr__(self) -> str:
        return f"<App {self.main} broker={redact_url(self.conf.broker_url)}>"

    def add_middleware(self, middleware: object) -> None:
        """Add a hook object after those given to ``App(middleware=...)``."""
        self.hooks.add(middleware)

    # --- tasks ---------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, fn: None = None, /, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self, fn: Callable[P, R] | None = None, /, **options: Any
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a task: ``@app.task`` or ``@app.task(queue="high", max_retries=5)``;
        ``base=MyTask`` (a ``cloudq.Task`` subclass) gives it Celery's handlers."""

        def register(func: Callable[P, R]) -> Task[P, R]:
            from cloudq.task_class import make_task

            task, declared = make_task(self, func, options)
            name = task.name
            if name in self.tasks and self.tasks[name].fn is not func:
                logger.warning("task %s registered twice; the later definition wins", name)
            self.tasks[name] = task
            self._declared[name] = (func, declared)
            return task

        if fn is not None:
            return register(fn)
        return register

    def gen_task_name(self, func: Callable[..., Any]) -> str:
        """``module.qualname``; a task defined in the script run as ``__main__`` is named after
        the app's ``main`` instead, so the worker, which imports the module, finds it."""
        module = func.__module__
        if module == "__main__" and self._named:
            module = self.main
        return f"{module}.{func.__qualname__}"

    def _task_options(self, name: str, declared: Mapping[str, Any]) -> TaskOptions:
        """Declared options under ``task_annotations`` (which win, as in Celery), with
        ``task_ignore_result`` for tasks that do not say."""
        values = dict(declared)
        values.setdefault("ignore_result", self.conf.task_ignore_result)
        values.update(self._annotations_for(name))
        try:
            opts = TaskOptions(name=name, **values)
        except TypeError as exc:
            raise ConfigurationError(f"@app.task on {name}: {exc}") from None
        if opts.max_retries is not None and opts.max_retries < -1:
            raise ConfigurationError(f"@app.task on {name}: max_retries must be >= 0")
        return opts

    def _annotations_for(self, name: str) -> dict[str, Any]:
        """Celery's ``task_annotations``: ``*`` first, then globs, then the exact name."""
        found: dict[str, Any] = {}
        annotations = self.conf.task_annotations
        for pattern in sorted(annotations, key=lambda p: (p != "*", p == name)):
            if pattern == "*" or fnmatch.fnmatchcase(name, pattern):
                found.update(annotations[pattern])
        return found

    def _setting_changed(self, name: str) -> None:
        if name in ("task_annotations", "task_ignore_result"):
            for task_name, (_, declared) in list(self._declared.items()):
                task = dict.get(self.tasks, task_name)
                if task is not None:
                    task.reconfigure(self._task_options(task_name, declared))

    def register_shared(
        self, func: Callable[..., Any], options: Mapping[str, Any]
    ) -> Task[Any, Any]:
        """This app's task for a ``@shared_task`` function (registered on first need)."""
        with self._finalize_lock:
            task = self._shared_tasks.get(func)
            if task is None:
                task = self._shared_tasks[func] = self.task(**dict(options))(func)
            return task

    def set_current(self) -> None:
        """Make this the app ``@shared_task`` objects act on (Celery's ``set_current``)."""
        from cloudq.shared import set_current

        set_current(self)

    set_default = set_current

    def start(self, argv: Sequence[str] | None = None) -> None:
        """``app.start()`` under ``if __name__ == "__main__"`` (Celery's ``proj/celery.py``):
        the cloudq command for this app, ``python -m proj.celery worker -Q default``."""
        import sys

        from cloudq.cli import run

        args = list(sys.argv[1:] if argv is None else argv)
        run(["-A", self._import_ref(), *args])

    def _import_ref(self) -> str:
        """``module:attribute`` of this app, also when its module runs as ``__main__``
        (``python -m proj.celery``): workers import it by that name."""
        import sys

        from cloudq.app_loading import find_app_ref

        try:
            return find_app_ref(self)
        except ConfigurationError:
            main = sys.modules.get("__main__")
            spec = getattr(main, "__spec__", None)
            for attr, value in vars(main).items() if main is not None else ():
                if value is self and spec is not None and spec.name != "__main__":
                    return f"{spec.name}:{attr}"
            raise

    # --- configuration, Celery's ways ----------------------------------------------------
    def config_from_object(
        self, obj: Any, *, silent: bool = False, force: bool = False, namespace: str | None = None
    ) -> bool:
        """Read settings from a module, an object or ``"module:attribute"``
        (``"celeryconfig"``, ``"django.conf:settings"``). With ``namespace="CELERY"`` only
        ``CELERY_*`` names are read (``CELERY_BROKER_URL`` for ``broker_url``). Settings read
        here are applied over what is set already; ``force`` is accepted for Celery's sake."""
        from cloudq.config_source import load_config_object, settings_in

        try:
            source = load_config_object(obj) if isinstance(obj, str) else obj
        except ConfigurationError:
            if silent:
                return False
            raise
        self.conf.update(settings_in(source, namespace, type(self.conf).model_fields))
        self._config_source = source
        if type(source).__module__.startswith("django."):  # django.conf:settings, as Celery's
            from cloudq.contrib.django.fixup import install

            install(self)
        return True

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``<package>.tasks`` for each package (or what a callable returns, such as
        ``lambda: settings.INSTALLED_APPS``) when the app is finalized, or now with ``force``.
        Without packages, the ``INSTALLED_APPS`` of the object given to
        ``config_from_object``. A package without that module is skipped; any other import
        error is raised."""
        self._discover.append((packages, related_name))
        if force or self._finalized:
            self._run_discovery()

    def _run_discovery(self) -> None:
        from cloudq.config_source import import_related

        while self._discover:
            packages, related_name = self._discover.pop(0)
            if callable(packages):
                packages = packages()
            if packages is None and self.discover_default is not None:
                packages = self.discover_default()
            if packages is None:
                packages = getattr(self._config_source, "INSTALLED_APPS", None)
                if packages is None:
                    raise ConfigurationError(
                        "autodiscover_tasks() needs packages: autodiscover_tasks(['shop', "
                        "'billing']) or a callable returning them"
                    )
            for package in packages:
                import_related(package, related_name)

    def finalize(self) -> bool:
        """Import ``include`` modules and autodiscovered task modules, then send
        ``on_after_configure`` and ``on_after_finalize``: once, when the app is first used by
        a worker, beat or the CLI, or a task lookup misses. True if it ran now."""
        if self._finalized:
            return False
        with self._finalize_lock:
            if self._finalized:
                return False
            self._finalized = True
            try:
                for module in dict.fromkeys([*self.conf.imports, *self.conf.include]):
                    try:
                        importlib.import_module(module)
                    except ImportError as exc:
                        raise ConfigurationError(
                            f"app {self.main!r}: cannot import include module {module!r}: {exc}"
                        ) from exc
                self._run_discovery()
                self.on_after_configure.send(sender=self, source=self.conf)
                self.on_after_finalize.send(sender=self)
            except BaseException:
                self._finalized = False
                raise
        return True

    def add_periodic_task(
        self,
        schedule: float | timedelta | str | BaseSchedule,
        sig: Signature,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> str:
        """Celery's ``sender.add_periodic_task(10.0, add.s(2, 2), name="add every 10")``: an
        entry in ``beat_schedule``; returns its name."""
        key = name or f"{sig.task}{tuple(args or sig.args)!r}"
        self.conf.beat_schedule[key] = {
            "task": sig.task,
            "schedule": schedule,
            "args": list(args or sig.args),
            "kwargs": dict(kwargs or sig.kwargs),
            "options": {**sig.options, **options},
        }
        return key

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        name: str | None = None,
        timezone: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        missed: str = "run_once",
        **task_options: Any,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """A periodic task: ``@app.periodic(cron="*/5 * * * *")`` or ``every=timedelta(...)``."""

        from cloudq.beat import make_entry

        def register(func: Callable[P, R]) -> Task[P, R]:
            task = func if isinstance(func, Task) else self.task(**task_options)(func)
            seconds = every.total_seconds() if isinstance(every, timedelta) else every
            entry = make_entry(
                name=name or task.name,
                task=task.name,
                cron=cron,
                every=seconds,
                timezone=timezone,
                args=list(args),
                kwargs=kwargs or {},
                queue=queue,
                missed=missed,
            )
            self._periodic[entry.name] = entry
            return task

        return register

    def beat_entries(self) -> list[ScheduleEntry]:
        """``beat_schedule`` and ``@app.periodic`` entries together (names must differ)."""
        from cloudq.beat import parse_beat_schedule

        self.finalize()  # on_after_configure receivers add their entries
        schedule = parse_beat_schedule(self.conf.beat_schedule, timezone=self.conf.timezone)
        entries = {e.name: e for e in schedule}
        for name, entry in self._periodic.items():
            if name in entries:
                raise ConfigurationError(f"periodic task {name!r} is defined twice")
            entries[name] = entry
        return list(entries.values())

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise NotRegistered(f"task {name!r} is not registered with app {self.main!r}") from None

    def route(
        self,
        task_name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> str:
        """The queue for a task: its ``queue`` option, then ``task_routes`` (every router in
        order, called with the call's arguments), then the default."""
        task = self.tasks.get(task_name)
        if task is not None and task.options.queue:
            return task.options.queue
        routes: Routes = self.conf.task_routes
        if routes.routers:
            queue = routes.route(task_name, args, kwargs, options, task=task)
            if queue is not None:
                return queue
        return self.conf.task_default_queue

    # --- connections ---------------------------------------------------------------------
    @cached_property
    def broker(self) -> Broker:
        return open_broker(self.conf.broker_url, self.clock)

    @cached_property
    def backend(self) -> ResultBackend | None:
        url = self.conf.result_backend
        return open_backend(url, self.clock) if url else None

    @cached_property
    def claim_checks(self) -> ClaimCheckStore | None:
        url = self.conf.claim_check_url
        return open_claim_check_store(url) if url else None

    @property
    def signing_keys(self) -> list[str]:
        return self.conf.signing_keys

    def queue_spec(self, name: str) -> QueueSpec:
        return QueueSpec(
            name=name,
            lease_seconds=self.conf.queue_lease_seconds,
            max_receive_count=self.conf.queue_max_receive_count,
            fifo=is_fifo(name),
        )

    def ensure_queue(self, name: str) -> None:
        """Create a queue (and its DLQ) once per process, if ``create_missing_queues`` is on."""
        if name in self._ensured or not self.conf.create_missing_queues:
            return
        with self._lock:
            if name not in self._ensured:
                self.broker.ensure(self.queue_spec(name))
                self._ensured.add(name)

    def queue_ensured(self, name: str) -> bool:
        """Whether ``ensure_queue(name)`` would do nothing (so an async send skips a thread)."""
        return name in self._ensured or not self.conf.create_missing_queues

    def send_envelopes(self, envelopes: Sequence[Envelope]) -> None:
        """Sign, encode, plan delays and send, batched per queue; raise if anything failed."""
        from cloudq.producer import send_envelopes

        send_envelopes(self, envelopes)

    # --- results -------------------------------------------------------------------------
    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:  # noqa: N802
        return AsyncResult(task_id, self, task_name=task_name)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        """The result backend's shared slots if it has them, else this process's own."""
        backend = self.backend
        if isinstance(backend, RateLimiter):
            return backend
        logger.warning(
            "rate limits are enforced per worker: result backend %r has no shared rate limiter"
            " (use redis:// to limit across all workers and handlers)",
            redact_url(self.conf.result_backend or ""),
        )
        return LocalRateLimiter()

    @cached_property
    def reporter(self) -> Reporter:
        from cloudq.reports import Reporter

        return Reporter(self)

    def on_failure(
        self, callback: Callable[[FailureReport], None]
    ) -> Callable[[FailureReport], None]:
        """Call ``callback(report)`` on every final failure (usable as a decorator)."""
        self.reporter.hooks.append(callback)
        return callback

    def chord_store(self) -> ChordStore:
        """The result backend, as the atomic counter chords need; a clear error without one."""
        backend = self.backend
        if backend is None:
            raise ConfigurationError(
                "chords need a result backend to count finished header tasks: set "
                "App(backend='redis://...') (chains and groups work without one)"
            )
        if not isinstance(backend, ChordStore):
            raise ConfigurationError(
                f"result backend {redact_url(self.conf.result_backend or '')!r} cannot run "
                "chords (no atomic counter); use redis://, dynamodb://, firestore://, "
                "azuretable:// or memory://"
            )
        return backend

    def close(self) -> None:
        aio = sys.modules.get("cloudq.aio")  # its send threads, if a coroutine ever sent
        if aio is not None:
            aio.shutdown(self)
        if "broker" in self.__dict__:
            self.broker.close()
        if "backend" in self.__dict__ and self.backend is not None:
            self.backend.close()
        store = self.__dict__.get("claim_checks")
        if store is not None and hasattr(store, "close"):
            store.close()
        for name in ("broker", "backend", "claim_checks", "rate_limiter"):
            self.__dict__.pop(name, None)  # reopened on next use
        self._ensured.clear()

    @cached_property
    def control(self) -> Control:
        """Celery's ``app.control``: ``app.control.revoke(ids, terminate=False)``, and the
        revoked ids this process knows (``app.control.revoked``)."""
        from cloudq.control.commands import Control

        return Control(self)

    # --- Celery's task classes and send_task (cloudq.task_class, cloudq.send_task) -------
    @property
    def Task(self) -> type[_Task[Any, Any]]:  # noqa: N802 - Celery's name
        """``class MyTask(app.Task)``: a base whose tasks belong to this app; assign another
        (``app.Task = MyTask``) to make it the default base of ``@app.task``."""
        base = self.__dict__.get("_task_base")
        if base is None:
            from cloudq.task_class import app_base

            base = self.__dict__["_task_base"] = app_base(self)
        return base

    @Task.setter
    def Task(self, base: type[_Task[Any, Any]]) -> None:  # noqa: N802
        from cloudq.task_class import base_for

        self.__dict__["_task_base"] = base_for(self, base)

    def register_task(self, task: Any) -> _Task[Any, Any]:
        """Register a class-based task: ``app.register_task(MyTask())``."""
        from cloudq.task_class import register_task

        return register_task(self, task)

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> _AsyncResult:
        """Send a task by name, for producers that do not import its code (see
        ``cloudq.send_task``: the arguments cannot be checked against its signature here)."""
        from cloudq.send_task import send_task

        return send_task(self, name, args, kwargs, **options)
