"""Celery's task classes: ``app.Task``, ``@app.task(base=...)``, class-based tasks, handlers,
``self.retry``, ``update_state``.

Kept apart from ``cloudq.task`` (the calling API) so the Task class stays readable: this module
holds how a class becomes a task, which options its attributes give, and how handlers are
called without ever failing the delivery they belong to.
"""

from __future__ import annotations

import dataclasses
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cloudq.arguments import ArgumentSpec
from cloudq.errors import ConfigurationError, Retry, TaskArgumentError
from cloudq.logsafe import get_logger
from cloudq.request import current_request
from cloudq.retry import max_retries_exceeded, retries_left

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.outcome import Outcome
    from cloudq.task import Task, TaskOptions

logger = get_logger("cloudq.task_class")

HANDLERS = ("before_start", "on_success", "on_failure", "on_retry", "after_return")
"""Celery's handler methods, called by ``execute`` when a class overrides one."""

RETRY_KWARGS = frozenset({"countdown", "max_retries"})
"""What ``retry_kwargs`` may hold: what an automatic retry can be told."""

SUCCESS_STATE = "SUCCESS"
FAILURE_STATE = "FAILURE"


def option_names() -> frozenset[str]:
    from cloudq.task import TaskOptions

    return frozenset(f.name for f in dataclasses.fields(TaskOptions))


def check_options(opts: TaskOptions) -> None:
    """Options cloudq refuses on purpose, each with what to write instead."""
    where = f"task {opts.name!r}"
    if opts.acks_late is not True:
        raise ConfigurationError(
            f"{where}: acks_late=False (acknowledge before running) is not offered: cloudq "
            "always acknowledges after the task ends, so a crash re-runs it; drop acks_late, "
            "and make the task idempotent (or idempotent=True)"
        )
    if opts.serializer != "json":
        raise ConfigurationError(
            f"{where}: serializer={opts.serializer!r}: cloudq sends JSON only, validated "
            "against the type hints; drop serializer= and pass ids or JSON values"
        )
    unknown = set(opts.retry_kwargs or {}) - RETRY_KWARGS
    if unknown:
        raise ConfigurationError(
            f"{where}: retry_kwargs takes {sorted(RETRY_KWARGS)}, not {sorted(unknown)}"
        )


def spec_for(fn: Callable[..., Any], opts: TaskOptions) -> ArgumentSpec:
    """The argument checks of a task body (a bound method's ``self`` is already gone)."""
    bound = opts.bind and not hasattr(fn, "__self__")
    return ArgumentSpec(
        fn,
        opts.name,
        bound,
        context=opts.pydantic_context,
        dump_kwargs=opts.pydantic_dump_kwargs,
        check=opts.typing,
        typed_results=not opts.pydantic,
    )


def is_hooked(cls: type[Task[Any, Any]]) -> bool:
    from cloudq.task import Task

    return any(getattr(cls, name) is not getattr(Task, name) for name in HANDLERS)


def class_options(cls: type) -> dict[str, Any]:
    """Options a Task subclass gives as class attributes (``max_retries = 5``), the nearest
    class winning, as Celery reads them; other attributes are the class's own business."""
    from cloudq.task import Task

    names = option_names()
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is Task or not (isinstance(klass, type) and issubclass(klass, Task)):
            continue
        found.update({k: v for k, v in vars(klass).items() if k in names})
    return found


def base_for(app: App, base: Any) -> type[Task[Any, Any]]:
    from cloudq.task import Task

    base = app.Task if base is None else base
    if not (isinstance(base, type) and issubclass(base, Task)):
        raise ConfigurationError(f"base={base!r}: a task base must subclass cloudq.Task")
    return base


def make_task(
    app: App, fn: Callable[..., Any], declared: Mapping[str, Any]
) -> tuple[Task[Any, Any], dict[str, Any]]:
    """``@app.task(base=MyTask, ...)``: an instance of the base with ``fn`` as its body; the
    base's class attributes are defaults the decorator's options override. Returns the task
    and the options it was declared with (for ``task_annotations`` changes)."""
    values = dict(declared)
    base = base_for(app, values.pop("base", None))
    options = {**class_options(base), **values}
    name = options.pop("name", None) or app.gen_task_name(fn)
    task = base.__new__(base)
    type(task).setup(task, app, fn, app._task_options(name, options))
    if base.__init__ is not _task_init():
        base.__init__(task)  # a base's own __init__ (Celery calls it with no arguments)
    return task, options


def _task_init() -> Callable[..., None]:
    from cloudq.task import Task

    return Task.__init__


def class_based(
    task: Task[Any, Any], app: App | None
) -> tuple[App, Callable[..., Any], TaskOptions]:
    """``MyTask()``: its app (``app.Task``'s, else the current one), ``run`` as body."""
    from cloudq.task import Task

    cls = type(task)
    if cls.run is Task.run:
        raise ConfigurationError(
            f"class-based task {cls.__qualname__} needs a run(self, ...) method, or use "
            "@app.task(base=...) on a function"
        )
    if app is None:
        app = getattr(cls, "app", None)
    if app is None:
        from cloudq.shared import current_app

        app = current_app()
    options = class_options(cls)
    name = options.pop("name", None) or app.gen_task_name(cls)
    return app, task.run, app._task_options(name, options)


def register_task(app: App, task: Task[Any, Any] | type[Task[Any, Any]]) -> Task[Any, Any]:
    """``app.register_task(MyTask())`` (or the class): register a class-based task, moving it
    to ``app`` if it was made for another."""
    from cloudq.task import Task

    if isinstance(task, type) and issubclass(task, Task):
        task = task(app)
    if not isinstance(task, Task):
        raise ConfigurationError(f"register_task takes a Task instance, not {task!r}")
    if "options" not in vars(task):  # its own __init__ did not call Task.__init__
        task.setup(*class_based(task, app))
    elif task.app is not app:
        options = class_options(type(task))
        options.pop("name", None)
        task.setup(app, task.fn, app._task_options(task.name, options))
    app.tasks[task.name] = task
    app._declared[task.name] = (task.fn, class_options(type(task)))
    return task


def app_base(app: App) -> type[Task[Any, Any]]:
    """``app.Task``: a Task subclass whose instances belong to ``app``."""
    from cloudq.task import Task

    return type("Task", (Task,), {"app": app, "__module__": Task.__module__})


# --- handlers ---------------------------------------------------------------------------
class ExceptionInfo:
    """Celery's ``einfo``: the exception, its type, and its traceback as text."""

    def __init__(self, exc: BaseException) -> None:
        self.exception = exc
        self.type = type(exc)
        self.tb: TracebackType | None = exc.__traceback__
        self.traceback = "".join(traceback.format_exception(exc))

    def __str__(self) -> str:
        return self.traceback


def _call(task: Task[Any, Any], name: str, *args: Any) -> None:
    """Call one handler; one that raises is logged, never allowed to change the outcome."""
    try:
        getattr(task, name)(*args)
    except BaseException:  # SystemExit in a handler must not stop the worker either
        logger.exception("task %s: handler %s raised (outcome unchanged)", task.name, name)


def before_start(task: Task[Any, Any], task_id: str, args: Any, kwargs: Any) -> None:
    _call(task, "before_start", task_id, args, kwargs)


def after_run(
    task: Task[Any, Any],
    task_id: str,
    args: Any,
    kwargs: Any,
    outcome: Outcome,
    exc: BaseException | None,
    value: Any,
) -> None:
    """Celery's handlers for what ``execute`` decided: ``on_retry`` for a retry;
    ``on_success`` or ``on_failure`` then ``after_return`` for an end."""
    from cloudq.outcome import Ack, DeadLetter, RetryAt

    if isinstance(outcome, RetryAt):
        error = exc if exc is not None else Retry()
        _call(task, "on_retry", error, task_id, args, kwargs, ExceptionInfo(error))
        return
    record = outcome.result if isinstance(outcome, Ack | DeadLetter) else None
    failed = isinstance(outcome, DeadLetter) or (record is not None and record.error is not None)
    if not failed and isinstance(outcome, Ack):
        _call(task, "on_success", value, task_id, args, kwargs)
        _call(task, "after_return", SUCCESS_STATE, value, task_id, args, kwargs, None)
    elif failed:
        if exc is None:
            message = record.error.message if record and record.error else str(outcome)
            exc = TypeError(message)
        einfo = ExceptionInfo(exc)
        _call(task, "on_failure", exc, task_id, args, kwargs, einfo)
        _call(task, "after_return", FAILURE_STATE, exc, task_id, args, kwargs, einfo)


# --- self.retry, update_state -----------------------------------------------------------
def request_retry(
    task: Task[Any, Any],
    args: Sequence[Any] | BaseException | None,
    kwargs: Mapping[str, Any] | None,
    exc: BaseException | None,
    throw: bool,
    eta: datetime | None,
    countdown: float | None,
    max_retries: int | None,
    options: Mapping[str, Any],
) -> Retry:
    """Celery's ``Task.retry``: decided here what can be decided in the task (no retry left
    raises in the body, where the task may catch it); the worker schedules the rest."""
    if isinstance(args, BaseException):  # retry(exc, countdown=10): the tasks guide writes it
        exc, args = exc or args, None
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ConfigurationError(
            f"task {task.name!r}: retry() takes no send options ({', '.join(given)}): the next "
            "attempt keeps the message's queue, priority, headers and expiry"
        )
    request = task.request
    if request.called_directly:
        raise exc if exc is not None else Retry(None, countdown, max_retries, eta=eta)
    if eta is not None and eta.tzinfo is None:
        raise ConfigurationError("retry(eta=...) must be timezone-aware (e.g. datetime.now(UTC))")
    policy = request.retry_policy
    if policy is not None:
        if max_retries is not None:
            policy = policy.model_copy(update={"max_retries": max_retries})
        if not retries_left(policy, request.attempt):
            if exc is not None:
                raise exc
            raise max_retries_exceeded(task.name, request.id, request.attempt)
    json_args: list[Any] | None = None
    json_kwargs: dict[str, Any] | None = None
    if args is not None or kwargs is not None:
        new_args = list(request.args if args is None else args)
        new_kwargs = dict(request.kwargs) if kwargs is None else dict(kwargs)
        json_args, json_kwargs = task.arguments.dump(new_args, new_kwargs)
    retry = Retry(exc, countdown, max_retries, eta=eta, args=json_args, kwargs=json_kwargs)
    if throw:
        if exc is not None and sys.exc_info()[1] is exc:
            raise retry from exc
        raise retry
    request.pending_retry = retry
    return retry


def update_state(
    task: Task[Any, Any],
    task_id: str | None,
    state: str | None,
    meta: Any,
) -> None:
    """Write ``state``/``meta`` through the result backend (Celery's ``update_state``)."""
    from pydantic_core import to_jsonable_python

    from cloudq.results.base import TaskResult

    request = current_request.get()
    task_id = task_id or (request.id if request is not None else None)
    if task_id is None:
        raise ConfigurationError(
            f"task {task.name!r}: update_state() outside a running task needs task_id="
        )
    if state is None:
        raise ConfigurationError(f"task {task.name!r}: update_state() needs state=, e.g. PROGRESS")
    backend = task.app.backend
    if backend is None:
        raise ConfigurationError(
            f"task {task.name!r}: update_state() stores the state in the result backend, and "
            f"app {task.app.main!r} has none: set App(backend='redis://...')"
        )
    try:
        stored = to_jsonable_python(meta)
    except Exception as exc:  # noqa: BLE001 - any encoder failure means: not JSON
        raise TaskArgumentError(
            f"task {task.name!r}: update_state meta is not JSON ({exc}); store ids and numbers"
        ) from None
    attempt = request.attempt if request is not None and request.id == task_id else 1
    record = TaskResult(
        task_id=task_id, state=state, task=task.name, result=stored, attempt=attempt
    )
    backend.store(record, task.app.conf.result_expires)
