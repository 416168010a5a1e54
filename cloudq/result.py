"""``AsyncResult``: the caller's handle on a sent task (Celery's API: get, ready, state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudq.errors import ConfigurationError, TaskRevokedError
from cloudq.results.base import ErrorInfo, State, TaskResult
from cloudq.results.rebuild import rebuild_exception

__all__ = ["AsyncResult", "EagerResult", "rebuild_exception"]

if TYPE_CHECKING:
    from cloudq.app import App


class AsyncResult:
    """Reads the task's record from the result backend."""

    def __init__(self, task_id: str, app: App, task_name: str | None = None) -> None:
        self.id = task_id
        self.app = app
        self.task_name = task_name

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def _backend(self) -> Any:
        backend = self.app.backend
        if backend is None:
            raise ConfigurationError(
                "no result backend is configured: results are off by default; set "
                "App(backend='redis://...') or CLOUDQ_RESULT_BACKEND to read results"
            )
        return backend

    def _record(self) -> TaskResult | None:
        record: TaskResult | None = self._backend().get(self.id)
        return record

    @property
    def state(self) -> State | str:
        record = self._record()
        return record.state if record else State.PENDING

    status = state

    def ready(self) -> bool:
        record = self._record()
        return bool(record and record.ready)

    def successful(self) -> bool:
        return self.state == State.SUCCESS

    def failed(self) -> bool:
        return self.state == State.FAILURE

    @property
    def traceback(self) -> str | None:
        record = self._record()
        return record.error.traceback if record and record.error else None

    @property
    def result(self) -> Any:
        """The value when done, the exception when failed, else None (does not wait)."""
        record = self._record()
        if record is None:
            return None
        if record.error is not None:
            return rebuild_exception(record.error)
        return self._value(record)

    def _value(self, record: TaskResult) -> Any:
        task = self.app.tasks.get(record.task or self.task_name or "")
        return task.arguments.load_result(record.result) if task else record.result

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the result; ``TimeoutError`` after ``timeout``; re-raise the task's error."""
        record: TaskResult | None = self._backend().wait(self.id, timeout)
        if record is None or not record.ready:
            state = record.state if record else State.PENDING
            raise TimeoutError(f"task {self.id} not ready after {timeout}s (state {state})")
        if record.state != State.SUCCESS:
            error = record.error or ErrorInfo(type="cloudq.errors.TaskFailed", message=record.state)
            exc = rebuild_exception(error)
            if record.state == State.REVOKED:  # revoked or expired: Celery's error for both
                exc = TaskRevokedError(error.message)
            if propagate:
                raise exc
            return exc
        return self._value(record)

    def forget(self) -> None:
        self._backend().forget(self.id)

    def revoke(
        self, terminate: bool = False, *, wait: bool = False, timeout: float | None = None
    ) -> None:
        """Revoke this task (``app.control.revoke``): it never runs; ``terminate`` stops it if
        it is running. Workers see it on their next heartbeat."""
        self.app.control.revoke(self.id, terminate=terminate, wait=wait, timeout=timeout)


class EagerResult:
    """The outcome of ``task.apply()``: already done, nothing to wait for."""

    def __init__(self, task_id: str, state: State, value: Any, error: ErrorInfo | None) -> None:
        self.id = task_id
        self.state = state
        self._value = value
        self.error = error

    def __repr__(self) -> str:
        return f"<EagerResult {self.id} {self.state}>"

    def ready(self) -> bool:
        return True

    def successful(self) -> bool:
        return self.state == State.SUCCESS

    def failed(self) -> bool:
        return self.state == State.FAILURE

    @property
    def result(self) -> Any:
        return rebuild_exception(self.error) if self.error else self._value

    @property
    def traceback(self) -> str | None:
        return self.error.traceback if self.error else None

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        if self.error is not None:
            exc = rebuild_exception(self.error)
            if propagate:
                raise exc
            return exc
        return self._value
