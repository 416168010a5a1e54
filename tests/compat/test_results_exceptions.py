"""Issue 24: ``get()`` re-raises the task's own exception class when it can be rebuilt (as
Celery's ``exception_to_python`` does), cloudq's own classes always, and ``TaskFailed`` for
anything a record names that is not an exception class of a module already imported here.
The result store is untrusted: nothing it names is ever imported, looked up lazily or unpickled.
"""

from __future__ import annotations

import sys
import types
import uuid
from collections.abc import Iterator

import pytest

from cloudq import App
from cloudq.errors import (
    ChordError,
    MaxRetriesExceededError,
    RemoteTraceback,
    SoftTimeLimitExceeded,
    TaskFailed,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from cloudq.result import rebuild_exception
from cloudq.results.base import ErrorInfo, State, TaskResult
from cloudq.testing import start_worker


@pytest.fixture
def app() -> App:
    name = f"results-exc-{uuid.uuid4().hex[:8]}"
    return App(name, broker=f"memory://{name}", backend=f"memory://{name}")


class OrderRefused(Exception):
    """A task's own exception, defined in a module the caller has imported."""


class Outer:
    class Nested(ValueError):
        pass


class NeedsTwo(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)


def _rebuilt(type_name: str, message: str = "boom") -> BaseException:
    return rebuild_exception(ErrorInfo(type=type_name, message=message, traceback="tb"))


def test_the_tasks_own_class_is_rebuilt_with_its_message() -> None:
    exc = _rebuilt(f"{__name__}.OrderRefused", "no seats")
    assert type(exc) is OrderRefused and str(exc) == "no seats"
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert type(_rebuilt(f"{__name__}.Outer.Nested")) is Outer.Nested
    assert type(_rebuilt("builtins.KeyError")) is KeyError


@pytest.mark.parametrize(
    "cls",
    [
        MaxRetriesExceededError,
        TaskRevokedError,
        TimeLimitExceeded,
        SoftTimeLimitExceeded,
        ChordError,
        WorkerLostError,
    ],
)
def test_cloudqs_own_classes_are_always_rebuilt(cls: type[Exception]) -> None:
    exc = _rebuilt(f"cloudq.errors.{cls.__qualname__}", "why")
    assert type(exc) is cls and str(exc) == "why"


@pytest.mark.parametrize(
    "type_name",
    [
        "os.system",  # a function, not a class
        "posix.system",
        "subprocess.Popen",  # a class, not an exception
        "builtins.type",
        "builtins.eval",
        "builtins.SystemExit",  # BaseException only: would stop the caller
        "builtins.KeyboardInterrupt",
        "builtins.GeneratorExit",
        f"{__name__}.NeedsTwo",  # cannot be constructed from a message
        f"{__name__}.test_the_tasks_own_class_is_rebuilt_with_its_message.<locals>.E",
        "",
        "NoModule",
        "cloudq.errors.TaskFailed",
        "os.path.__class__",
        "builtins.__class__",
        "tests.compat.test_results_exceptions.OrderRefused.__subclasses__",
    ],
)
def test_anything_else_a_record_names_becomes_task_failed(type_name: str) -> None:
    exc = _rebuilt(type_name, "rm -rf /")
    assert type(exc) is TaskFailed
    assert exc.exc_type == type_name and exc.message == "rm -rf /"


def test_a_module_not_imported_is_never_imported() -> None:
    name = "cloudq_never_imported_module"
    assert name not in sys.modules
    exc = _rebuilt(f"{name}.Boom")
    assert type(exc) is TaskFailed
    assert name not in sys.modules
    assert "antigravity" not in sys.modules
    assert type(_rebuilt("antigravity.Fly")) is TaskFailed
    assert "antigravity" not in sys.modules


@pytest.fixture
def lazy_module() -> Iterator[list[str]]:
    """A module whose ``__getattr__`` (PEP 562) would import on lookup: it must not be asked."""
    asked: list[str] = []
    module = types.ModuleType("cloudq_lazy_test_module")

    def lookup(name: str) -> type[Exception]:
        asked.append(name)
        return OrderRefused

    module.__getattr__ = lookup  # type: ignore[method-assign]
    sys.modules[module.__name__] = module
    yield asked
    del sys.modules[module.__name__]


def test_a_modules_lazy_getattr_is_never_called(lazy_module: list[str]) -> None:
    assert type(_rebuilt("cloudq_lazy_test_module.Lazy")) is TaskFailed
    assert lazy_module == []


def test_a_worker_failure_is_reraised_as_the_tasks_class(app: App) -> None:
    @app.task(name="orders.refuse", max_retries=0)
    def refuse(order: int) -> None:
        raise OrderRefused(f"order {order} refused")

    with start_worker(app, queues=["default"]):
        result = refuse.delay(7)
        with pytest.raises(OrderRefused, match="order 7 refused") as raised:
            result.get(timeout=10)
    assert "OrderRefused" in str(raised.value.__cause__)
    assert isinstance(result.get(timeout=1, propagate=False), OrderRefused)
    assert isinstance(result.result, OrderRefused) and isinstance(result.info, OrderRefused)


def test_a_forged_record_gets_task_failed_from_get(app: App) -> None:
    backend = app.backend
    assert backend is not None
    for i, name in enumerate(["os.system", "subprocess.Popen", "builtins.SystemExit"]):
        error = ErrorInfo(type=name, message="echo owned")
        backend.store(TaskResult(task_id=f"forged-{i}", state=State.FAILURE, error=error), None)
        with pytest.raises(TaskFailed, match="echo owned"):
            app.AsyncResult(f"forged-{i}").get(timeout=1)
