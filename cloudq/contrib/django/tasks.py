"""A backend for Django's Tasks framework on cloudq: ``@task`` / ``.enqueue()`` on cloud queues.

::

    TASKS = {
        "default": {
            "BACKEND": "cloudq.contrib.django.tasks.CloudqBackend",
            "OPTIONS": {"app": "proj.cloudq:app"},  # without it: the current cloudq app
        }
    }

Each Django task becomes a cloudq task named by its module path (``shop.tasks.send_mail``) on
the app, when it is defined (``validate_task`` runs then): the worker finds it when it imports
the app's task modules (``autodiscover_tasks()``), and a message naming anything else is a dead
letter as for any unknown task, so a message never picks the code it runs. Django's queue name
is the cloudq queue (``"default"`` follows the app's ``task_routes`` and default queue),
``run_after`` is the eta (any delay), the result is cloudq's result record, read back as
Django's ``TaskResult``. ``enqueue()`` also stores a small record of the call (task path, args,
enqueue time) beside it, before sending, so ``get_result(id)`` answers READY at once and knows
the arguments of a task that failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cloudq.contrib.django.framework import (
    BaseTaskBackend,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
    task_finished,
    task_started,
)
from cloudq.errors import ConfigurationError
from cloudq.ids import new_id
from cloudq.results.base import TaskResult as Record
from cloudq.states import State

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.request import Request
    from cloudq.task import Task as CloudqTask

DEFAULT_QUEUE = "default"
"""Django's default queue name: sent where the app routes it, not to a queue of that name."""
CALL_SUFFIX = ".django"
"""The call record of task ``id`` is stored as ``id + CALL_SUFFIX``."""

STATUS: Mapping[str, str] = {
    State.PENDING: "READY",
    State.RETRY: "READY",  # Django's READY: "ready to be executed again"
    State.REJECTED: "READY",  # requeued
    State.RECEIVED: "RUNNING",
    State.STARTED: "RUNNING",
    State.SUCCESS: "SUCCESSFUL",
    State.FAILURE: "FAILED",
    State.REVOKED: "FAILED",
    State.IGNORED: "FAILED",
}
"""cloudq state -> Django status; a task's own state (``PROGRESS``) is RUNNING."""

_known: dict[str, Task[Any, Any]] = {}
"""Module path -> the Django task defined under it (the first definition: ``using()`` copies
carry their options in the message)."""


def _status(name: str) -> TaskResultStatus:
    """Django's status by name (typed: without Django's stubs its members read as tuples)."""
    return TaskResultStatus(name)


def status_of(state: str) -> TaskResultStatus:
    return _status(STATUS.get(state, "RUNNING"))


class CloudqBackend(BaseTaskBackend):
    """Django's ``TASKS`` backend sending to and reading from a cloudq app."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._app: App | None = None

    @property
    def app(self) -> App:
        """``OPTIONS["app"]`` (``"module:attribute"`` or an App), else the current app."""
        if self._app is None:
            ref = self.options.get("app")
            if ref is None:
                from cloudq.shared import current_app

                self._app = current_app()
            elif isinstance(ref, str):
                self._app = _import_app(ref, self.alias)
            else:
                from cloudq.app import App

                if not isinstance(ref, App):
                    raise ConfigurationError(
                        f"TASKS[{self.alias!r}]['OPTIONS']['app'] is {ref!r}: give a cloudq "
                        "App or its import path, 'proj.cloudq:app'"
                    )
                self._app = ref
        return self._app

    # --- defining and sending ------------------------------------------------------------
    def validate_task(self, task: Task[Any, Any]) -> None:
        """Django's checks, then the task's cloudq twin is registered on the app."""
        super().validate_task(task)
        self.cloudq_task(task)

    def cloudq_task(self, task: Task[Any, Any]) -> CloudqTask[Any, Any]:
        """The app's task that runs ``task`` (registered on first need)."""
        name = task.module_path
        _known.setdefault(name, task)
        app = self.app
        found = dict.get(app.tasks, name)  # no finalize: this runs while modules import
        if found is None:
            found = app.task(name=name, bind=True, typing=False)(_runner(name, self.alias))
        return found

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        self.validate_task(task)
        twin = self.cloudq_task(task)
        result_id = new_id()
        now = datetime.now(UTC)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        queue = None if task.queue_name == DEFAULT_QUEUE else task.queue_name
        backend = self.app.backend
        if backend is not None:
            call = {"args": args, "kwargs": kwargs, "enqueued_at": now.isoformat()}
            record = Record(
                task_id=result_id + CALL_SUFFIX,
                state=State.PENDING,
                task=task.module_path,
                result=call,
            )
            backend.store(record, self.app.conf.result_expires)
        try:
            twin.apply_async(args, kwargs, task_id=result_id, queue=queue, eta=task.run_after)
        except BaseException:
            if backend is not None:  # never sent: no READY result that would never finish
                backend.forget(result_id + CALL_SUFFIX)
            raise
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=result_id,
            status=_status("READY"),
            enqueued_at=now,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    # --- reading -------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult[Any]:
        backend = self.app.backend
        if backend is None:
            raise ConfigurationError(
                f"TASKS[{self.alias!r}]: get_result needs the cloudq app's result_backend"
            )
        call = backend.get(result_id + CALL_SUFFIX)
        if call is None or not isinstance(call.result, dict) or call.task is None:
            raise TaskResultDoesNotExist(result_id)
        task = self._task_named(call.task)
        record = backend.get(result_id)
        state = record.state if record is not None else State.PENDING
        status = status_of(state)
        errors = []
        if record is not None and record.error is not None and status == _status("FAILED"):
            errors.append(
                TaskError(exception_class_path=record.error.type, traceback=record.error.traceback)
            )
        finished = record.date_done if record is not None and record.ready else None
        attempts = record.attempt if record is not None and state != State.PENDING else 0
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=result_id,
            status=status,
            enqueued_at=_when(call.result.get("enqueued_at")),
            started_at=None,
            last_attempted_at=None,
            finished_at=finished,
            args=list(call.result.get("args") or []),
            kwargs=dict(call.result.get("kwargs") or {}),
            backend=self.alias,
            errors=errors,
            worker_ids=["cloudq"] * attempts,
        )
        if status == _status("SUCCESSFUL") and record is not None:
            object.__setattr__(result, "_return_value", record.result)
        return result

    def _task_named(self, path: str) -> Task[Any, Any]:
        """The Django task of a call record: one this process defined, else imported by its
        path and accepted only if it is a Django task on this backend."""
        task = _known.get(path)
        if task is None:
            from django.utils.module_loading import import_string

            try:
                task = import_string(path)
            except ImportError as exc:
                raise TaskResultDoesNotExist(f"task {path!r} cannot be imported: {exc}") from exc
            if not isinstance(task, Task):
                raise TaskResultDoesNotExist(f"{path!r} is not a Django task")
        return task


def _import_app(ref: str, alias: str) -> App:
    """``"proj.cloudq:app"`` imported, not finalized: a task module may be imported while
    Django populates its app registry, and finalizing then would re-enter ``django.setup()``."""
    import importlib

    from cloudq.app import App

    module, _, attr = ref.partition(":")
    try:
        found = getattr(importlib.import_module(module), attr or "app", None)
    except ImportError as exc:
        raise ConfigurationError(f"TASKS[{alias!r}]['OPTIONS']['app']: {exc}") from exc
    if not isinstance(found, App):
        raise ConfigurationError(
            f"TASKS[{alias!r}]['OPTIONS']['app']: {ref!r} is not a cloudq App ('module:attribute')"
        )
    return found


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _runner(name: str, alias: str) -> Any:
    """The body of the cloudq twin of Django task ``name``: calls the Django task with a
    ``TaskContext`` if it takes one, and sends Django's ``task_started``/``task_finished``."""

    def run(self: CloudqTask[Any, Any], *args: Any, **kwargs: Any) -> Any:
        task = _known[name]
        started = datetime.now(UTC)
        request: Request = self.request
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=request.id or "",
            status=_status("RUNNING"),
            enqueued_at=None,
            started_at=started,
            last_attempted_at=started,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=alias,
            errors=[],
            worker_ids=[request.hostname] * request.attempt,
        )
        sender = type(task.get_backend())
        task_started.send(sender, task_result=result)
        status = _status("FAILED")
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            value = normalize_json(value)
            status = _status("SUCCESSFUL")
            object.__setattr__(result, "_return_value", value)
            return value
        finally:
            object.__setattr__(result, "status", status)
            object.__setattr__(result, "finished_at", datetime.now(UTC))
            task_finished.send(sender, task_result=result)

    run.__name__ = name.rpartition(".")[2]
    run.__qualname__ = name
    return run
