"""Result handles as Celery's users read them: ``AsyncResult``, ``GroupResult``, ``EagerResult``.

``AsyncResult(task_id)`` names no app: it reads through the current one (``cloudq.shared``), as
Celery's does. Every read goes to the result backend; nothing is cached, so ``state`` moves on
as the task does. What a record says is untrusted: errors are rebuilt only as
``cloudq.results.rebuild`` allows, and a saved group is checked against its seal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from cloudq.errors import ConfigurationError, TaskRevokedError
from cloudq.request import current_request
from cloudq.results.base import ErrorInfo, State, TaskResult
from cloudq.results.groups import forget_group, restore_group_ids, save_group
from cloudq.results.rebuild import rebuild_exception
from cloudq.states import EXCEPTION_STATES, PROPAGATE_STATES

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.results.base import ResultBackend

__all__ = [
    "AsyncResult",
    "EagerResult",
    "GetCall",
    "GetOptions",
    "GroupResult",
    "ResultSet",
    "rebuild_exception",
]

PARENT_POLL_SECONDS = 0.5
"""How often ``get()`` on a result with parents looks at them while it waits (Celery's
``interval``): a failed parent ends the wait with its error, the child would never run."""


def _app_or_current(app: App | None) -> App:
    if app is not None:
        return app
    from cloudq.shared import current_app

    return current_app()


def in_a_task() -> bool:
    """True while a task runs in this thread (not when called directly)."""
    request = current_request.get()
    return request is not None and not request.called_directly


def assert_will_not_block(what: str = "result.get()") -> None:
    """Celery's guard: waiting on another task from inside a task can deadlock the pool (every
    slot waiting, nothing left to run what they wait for). Unlike Celery, a result already done
    is read without it: it cannot block (Celery's own ``log_error`` errback example reads one)."""
    request = current_request.get()
    if request is not None and not request.called_directly:
        raise RuntimeError(
            f"Never call {what} within a task ({request.task}[{request.id}]): a worker whose "
            "slots all wait on other tasks runs none of them. Chain the work instead "
            "(add.s(2, 2) | mul.s(8), or a chord for a group), or pass "
            "disable_sync_subtasks=False if you accept the risk."
        )


STREAMING_OPTIONS = frozenset({"callback", "on_message", "on_interval"})
"""Celery's ``get()`` hooks into its result consumer; cloudq has none to hook into."""


class GetOptions(TypedDict, total=False):
    """The keywords of every ``get()``/``aget()`` after ``timeout`` and ``propagate`` (Celery's
    names): one list for ``AsyncResult``, ``EagerResult`` and the async reads."""

    interval: float
    """How often a wait looks at the parents (Celery's poll interval)."""
    no_ack: bool
    """Celery's (AMQP) only: accepted, changes nothing."""
    follow_parents: bool
    """A failed parent ends the wait with its error."""
    disable_sync_subtasks: bool
    """Refuse to wait inside a task (it can deadlock the pool)."""
    callback: Any
    """Celery's streaming hooks (this one and the next two): refused with what to write."""
    on_message: Any
    on_interval: Any


@dataclass(frozen=True)
class GetCall:
    """One ``get()`` call's options, defaults filled in and Celery-only ones refused."""

    timeout: float | None = None
    propagate: bool = True
    interval: float = PARENT_POLL_SECONDS
    follow_parents: bool = True
    disable_sync_subtasks: bool = True

    @classmethod
    def of(
        cls, timeout: float | None, propagate: bool, options: GetOptions, method: str = "get"
    ) -> GetCall:
        given: dict[str, Any] = dict(options)
        refuse_streaming({k: v for k, v in given.items() if k not in _GET_NAMES}, method)
        given.pop("no_ack", None)
        return cls(timeout, propagate, **given)


_GET_NAMES = frozenset(GetOptions.__annotations__) - STREAMING_OPTIONS


def refuse_streaming(options: dict[str, Any], method: str) -> None:
    """Celery's streaming callbacks fail saying what to write; any other name as Python would."""
    streaming = sorted(STREAMING_OPTIONS & set(options))
    if streaming:
        raise ConfigurationError(
            f"{method}({streaming[0]}=...) is Celery's result-consumer hook, which cloudq does "
            "not have: read result.state and result.info (a custom state's meta, such as "
            "PROGRESS) in your own loop, then get() once ready() is true"
        )
    if options:
        raise TypeError(f"{method}() got an unexpected keyword argument {next(iter(options))!r}")


class AsyncResult:
    """Reads the task's record from the result backend."""

    def __init__(
        self,
        task_id: str,
        app: App | None = None,
        task_name: str | None = None,
        *,
        parent: AsyncResult | None = None,
    ) -> None:
        self.id = task_id
        self.app = _app_or_current(app)
        self.task_name = task_name
        self.parent = parent
        """The result this one's task gets its argument from (a chain's previous step)."""

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def task_id(self) -> str:
        return self.id

    def _backend(self) -> ResultBackend:
        return backend_of(self.app)

    def _record(self) -> TaskResult | None:
        return self._backend().get(self.id)

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
        """The value when done, the exception when failed (or retrying), a custom state's meta
        (``PROGRESS``'s dict), else None. Does not wait."""
        record = self._record()
        return None if record is None else self._info(record)

    info = result

    def _info(self, record: TaskResult) -> Any:
        if record.error is not None:
            return self._exception(record)
        if record.state == State.SUCCESS:
            return self._value(record)
        if record.state in EXCEPTION_STATES:
            return self._exception(record)
        return record.result  # a custom state's meta, as the task stored it

    def _value(self, record: TaskResult) -> Any:
        task = self.app.tasks.get(record.task or self.task_name or "")
        return task.arguments.load_result(record.result) if task else record.result

    def _exception(self, record: TaskResult) -> BaseException:
        error = record.error or ErrorInfo(type="cloudq.errors.TaskFailed", message=record.state)
        if record.state == State.REVOKED:  # revoked or expired: Celery's error for both
            return TaskRevokedError(error.message)
        return rebuild_exception(error)

    @property
    def date_done(self) -> datetime | None:
        record = self._record()
        return record.date_done if record else None

    @property
    def name(self) -> str | None:
        """The task's name (Celery: with ``result_extended``; cloudq records it always)."""
        record = self._record()
        return (record.task if record else None) or self.task_name

    @property
    def args(self) -> list[Any] | None:
        """The task's positional arguments, kept with ``result_extended`` as in Celery; None
        without it (records then carry no arguments: they can be large, and private)."""
        record = self._record()
        return record.args if record else None

    @property
    def kwargs(self) -> dict[str, Any] | None:
        """See ``args``."""
        record = self._record()
        return record.kwargs if record else None

    @property
    def queue(self) -> str | None:
        """The queue the task was delivered from (``result_extended``), else None."""
        record = self._record()
        return record.queue if record else None

    @property
    def children(self) -> list[AsyncResult]:
        """Results of the tasks this task sent while it ran, recorded with its result."""
        record = self._record()
        ids = record.children if record else []
        return [AsyncResult(child, self.app) for child in ids]

    def get(
        self, timeout: float | None = None, propagate: bool = True, **options: Unpack[GetOptions]
    ) -> Any:
        """Wait for the result; ``TimeoutError`` after ``timeout``; re-raise the task's error
        (or a failed parent's, with ``follow_parents``). ``interval`` paces only the look at
        parents: the backends wake on the record itself. ``no_ack`` is Celery's (AMQP) only."""
        call = GetCall.of(timeout, propagate, options)
        if call.disable_sync_subtasks and in_a_task() and not self.ready():  # done: no block
            assert_will_not_block()
        return self.outcome(call, self._wait(call))

    wait = get

    async def aget(
        self, timeout: float | None = None, propagate: bool = True, **options: Unpack[GetOptions]
    ) -> Any:
        """``get()`` that never blocks the event loop (``cloudq.aio``): ``await r.aget(5)``."""
        from cloudq import aio

        call = GetCall.of(timeout, propagate, options, "aget")
        # An async task holds its pool slot while it awaits: the same guard as get()'s.
        blocking = call.disable_sync_subtasks and in_a_task()
        if blocking and not await aio.run_blocking(self.app, self.ready):
            assert_will_not_block("result.aget()")
        return self.outcome(call, await aio.wait_for_record(self, call))

    def outcome(self, call: GetCall, record: TaskResult | None) -> Any:
        """What ``get()`` returns (or raises) once its wait gave ``record``."""
        if record is None or not record.ready:
            state = record.state if record else State.PENDING
            raise TimeoutError(f"task {self.id} not ready after {call.timeout}s (state {state})")
        if record.state != State.SUCCESS:
            exc = self._exception(record)
            if call.propagate:
                raise exc
            return exc
        return self._value(record)

    def _wait(self, call: GetCall) -> TaskResult | None:
        timeout, interval = call.timeout, call.interval
        if not (call.propagate and call.follow_parents) or self.parent is None:
            return self._backend().wait(self.id, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._raise_parent_error()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = max(interval, 0.01) if left is None else min(max(interval, 0.01), left)
            record = self._backend().wait(self.id, step)
            if (record is not None and record.ready) or left == 0.0:
                return record

    def _raise_parent_error(self) -> None:
        node: Any = self.parent
        while node is not None:
            if isinstance(node, AsyncResult):  # a chord's header group: its body says ChordError
                record = node._record()
                if record is not None and record.state in PROPAGATE_STATES:
                    raise node._exception(record)
            node = getattr(node, "parent", None)

    def forget(self) -> None:
        self._backend().forget(self.id)

    def revoke(
        self,
        connection: object = None,
        terminate: bool = False,
        signal: object = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke this task (``app.control.revoke``): it never runs; ``terminate`` stops it if
        it is running. Workers see it on their next heartbeat. ``connection`` and ``signal``
        are Celery's and unused (no broadcast queues; terminate stops the task's own way)."""
        self.app.control.revoke(self.id, terminate=terminate, wait=wait, timeout=timeout)


def backend_of(app: App) -> ResultBackend:
    """The app's result backend, or the error that says how to turn results on."""
    backend = app.backend
    if backend is None:
        raise ConfigurationError(
            "no result backend is configured: results are off by default; set "
            "App(backend='redis://...') or CLOUDQ_RESULT_BACKEND to read results"
        )
    return backend


class ResultSet:
    """Several results read together (Celery's ``ResultSet``), in order."""

    def __init__(self, results: Iterable[AsyncResult], app: App | None = None) -> None:
        self.results = list(results)
        self._app = app

    @property
    def app(self) -> App:
        if self._app is None:
            self._app = self.results[0].app if self.results else _app_or_current(None)
        return self._app

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def add(self, result: AsyncResult) -> None:
        if result not in self.results:
            self.results.append(result)

    def successful(self) -> bool:
        """Every task succeeded."""
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        """At least one task failed."""
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        """At least one task is not done yet."""
        return any(not r.ready() for r in self.results)

    def ready(self) -> bool:
        """Every task is done (succeeded, failed or revoked)."""
        return all(r.ready() for r in self.results)

    def completed_count(self) -> int:
        """How many tasks succeeded."""
        return sum(1 for r in self.results if r.successful())

    def join(
        self, timeout: float | None = None, propagate: bool = True, **options: Unpack[GetOptions]
    ) -> list[Any]:
        """Every result, in order; ``timeout`` covers the whole set (``TimeoutError``)."""
        call = GetCall.of(timeout, propagate, options, "join")
        if call.disable_sync_subtasks and in_a_task() and not self.ready():  # done: no block
            assert_will_not_block("join()")
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for r in self.results:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            out.append(r.get(left, propagate, interval=call.interval, disable_sync_subtasks=False))
        return out

    async def ajoin(
        self, timeout: float | None = None, propagate: bool = True, **options: Unpack[GetOptions]
    ) -> list[Any]:
        """``join()`` that never blocks the event loop: ``await group(...).adelay()).ajoin(5)``."""
        from cloudq import aio

        call = GetCall.of(timeout, propagate, options, "ajoin")
        blocking = call.disable_sync_subtasks and in_a_task()
        if blocking and not await aio.run_blocking(self.app, self.ready):
            assert_will_not_block("ajoin()")
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for r in self.results:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            out.append(
                await r.aget(left, propagate, interval=call.interval, disable_sync_subtasks=False)
            )
        return out

    get = join
    join_native = join
    aget = ajoin

    def forget(self) -> None:
        for r in self.results:
            r.forget()

    def revoke(
        self,
        connection: object = None,
        terminate: bool = False,
        signal: object = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke every task of the set in one call."""
        if self.results:
            ids = [r.id for r in self.results]
            self.app.control.revoke(ids, terminate=terminate, wait=wait, timeout=timeout)


class GroupResult(ResultSet):
    """Results of a group, in the order of its tasks; ``save()`` keeps it for ``restore(id)``."""

    def __init__(
        self,
        id: str,  # Celery's name
        results: Iterable[AsyncResult] = (),
        parent: AsyncResult | None = None,
        app: App | None = None,
    ) -> None:
        super().__init__(results, app)
        self.id = id
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def children(self) -> list[AsyncResult]:
        return self.results

    def save(self, backend: ResultBackend | None = None) -> None:
        """Keep the group's task ids in the result backend (sealed when the app signs), for
        ``GroupResult.restore(id)`` in another process; expires with ``result_expires``."""
        save_group(self.app, backend or backend_of(self.app), self.id, [r.id for r in self])

    @classmethod
    def restore(
        cls,
        id: str,  # Celery's name
        backend: ResultBackend | None = None,
        app: App | None = None,
    ) -> GroupResult | None:
        """The group ``save()`` kept, or None if there is none (never saved, or expired).
        ``SignatureError`` if the app signs and the stored group is unsealed or changed."""
        app = _app_or_current(app)
        ids = restore_group_ids(app, backend or backend_of(app), id)
        if ids is None:
            return None
        return cls(id, [AsyncResult(task_id, app) for task_id in ids], app=app)

    def forget(self) -> None:
        """Forget every task's result and the saved group."""
        super().forget()
        forget_group(backend_of(self.app), self.id)


class EagerResult:
    """The outcome of ``task.apply()``: already done, nothing to wait for."""

    def __init__(self, task_id: str, state: State, value: Any, error: ErrorInfo | None) -> None:
        self.id = task_id
        self.state = state
        self._value = value
        self.error = error
        self.parent: AsyncResult | None = None
        self.children: list[AsyncResult] = []

    def __repr__(self) -> str:
        return f"<EagerResult {self.id} {self.state}>"

    @property
    def status(self) -> State:
        return self.state

    def ready(self) -> bool:
        return True

    def successful(self) -> bool:
        return self.state == State.SUCCESS

    def failed(self) -> bool:
        return self.state == State.FAILURE

    @property
    def result(self) -> Any:
        return rebuild_exception(self.error) if self.error else self._value

    info = result

    @property
    def traceback(self) -> str | None:
        return self.error.traceback if self.error else None

    def get(
        self, timeout: float | None = None, propagate: bool = True, **options: Unpack[GetOptions]
    ) -> Any:
        """The value, or the error re-raised; the options are Celery's and change nothing
        (an eager result never waits, so it never blocks a worker)."""
        call = GetCall.of(timeout, propagate, options)
        if self.error is not None:
            exc = rebuild_exception(self.error)
            if call.propagate:
                raise exc
            return exc
        return self._value

    async def aget(
        self, timeout: float | None = None, propagate: bool = True, **options: Unpack[GetOptions]
    ) -> Any:
        """``get()``: already done, nothing to await but the same answer."""
        return self.get(timeout, propagate, **options)

    wait = get

    def forget(self) -> None:
        """Nothing stored to forget."""
