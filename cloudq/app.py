"""The App: settings, the task registry, routing, and the broker and backend it opens lazily."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from cloudq.adapters import open_broker
from cloudq.adapters.base import Broker, QueueSpec
from cloudq.claimcheck import ClaimCheckStore, open_claim_check_store
from cloudq.clock import SYSTEM_CLOCK, Clock
from cloudq.config import Settings, make_settings
from cloudq.envelope import Envelope
from cloudq.errors import ConfigurationError, NotRegistered
from cloudq.logsafe import get_logger
from cloudq.ratelimit import LocalRateLimiter, RateLimiter
from cloudq.result import AsyncResult
from cloudq.results import ResultBackend, open_backend
from cloudq.results.base import ChordStore
from cloudq.task import Task, TaskOptions

if TYPE_CHECKING:
    from cloudq.beat import ScheduleEntry
    from cloudq.control.commands import Control
    from cloudq.reports import FailureReport, Reporter

logger = get_logger("cloudq")

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """``App("shop", broker="sqs://", backend="redis://localhost")``: Celery's ``Celery(...)``."""

    def __init__(
        self,
        main: str = "cloudq",
        broker: str | None = None,
        backend: str | None = None,
        *,
        clock: Clock | None = None,
        **settings: Any,
    ) -> None:
        if broker is not None:
            settings["broker_url"] = broker
        if backend is not None:
            settings["result_backend"] = backend
        self.main = main
        self.conf: Settings = make_settings(settings)
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._ensured: set[str] = set()
        self._periodic: dict[str, ScheduleEntry] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<App {self.main} broker={self.conf.broker_url}>"

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
        """Register a task: ``@app.task`` or ``@app.task(queue="high", max_retries=5)``."""

        def register(func: Callable[P, R]) -> Task[P, R]:
            name = options.pop("name", None) or f"{func.__module__}.{func.__qualname__}"
            try:
                opts = TaskOptions(name=name, **options)
            except TypeError as exc:
                raise ConfigurationError(f"@app.task on {name}: {exc}") from None
            if opts.max_retries is not None and opts.max_retries < -1:
                raise ConfigurationError(f"@app.task on {name}: max_retries must be >= 0")
            task: Task[P, R] = Task(self, func, opts)
            if name in self.tasks and self.tasks[name].fn is not func:
                logger.warning("task %s registered twice; the later definition wins", name)
            self.tasks[name] = task
            return task

        if fn is not None:
            return register(fn)
        return register

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

        entries = {e.name: e for e in parse_beat_schedule(self.conf.beat_schedule)}
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

    def route(self, task_name: str) -> str:
        """The queue for a task: its ``queue`` option, then ``task_routes``, then the default."""
        task = self.tasks.get(task_name)
        if task is not None and task.options.queue:
            return task.options.queue
        routes = self.conf.task_routes
        if task_name in routes:
            return routes[task_name]
        for pattern, queue in routes.items():
            if fnmatch.fnmatchcase(task_name, pattern):
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
            fifo=name.endswith(".fifo"),
        )

    def ensure_queue(self, name: str) -> None:
        """Create a queue (and its DLQ) once per process, if ``create_missing_queues`` is on."""
        if name in self._ensured or not self.conf.create_missing_queues:
            return
        with self._lock:
            if name not in self._ensured:
                self.broker.ensure(self.queue_spec(name))
                self._ensured.add(name)

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
            self.conf.result_backend,
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
                f"result backend {self.conf.result_backend!r} cannot run chords (no atomic "
                "counter); use redis://, dynamodb://, firestore://, azuretable:// or memory://"
            )
        return backend

    def close(self) -> None:
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
