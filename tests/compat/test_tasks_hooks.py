"""Issue 24: task classes as Celery writes them: ``base=`` with handlers, class-based tasks,
``app.Task`` subclasses whose class attributes are options, ``bind=True``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cloudq import App, Task, shared_task
from cloudq.errors import ConfigurationError
from cloudq.outcome import Ack, DeadLetter, RetryAt
from cloudq.testing import process_one

Calls = list[tuple[Any, ...]]


def recording_base(calls: Calls) -> type[Task[Any, Any]]:
    class Recording(Task[Any, Any]):
        def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
            calls.append(("before_start", task_id, list(args), dict(kwargs)))

        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            calls.append(("on_success", retval, task_id, list(args), dict(kwargs)))

        def on_failure(
            self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
        ) -> None:
            calls.append(("on_failure", type(exc).__name__, task_id, type(einfo.exception)))

        def on_retry(
            self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
        ) -> None:
            calls.append(("on_retry", type(exc).__name__, task_id))

        def after_return(
            self,
            status: str,
            retval: Any,
            task_id: str,
            args: Any,
            kwargs: Any,
            einfo: Any,
        ) -> None:
            calls.append(("after_return", status, task_id))

    return Recording


def test_base_handlers_run_in_celerys_order_in_the_worker(cloudq_app: App) -> None:
    calls: Calls = []

    @cloudq_app.task(base=recording_base(calls))
    def add(x: int, y: int) -> int:
        calls.append(("run", x, y))
        return x + y

    result = add.apply_async((2,), {"y": 3})
    assert isinstance(process_one(cloudq_app), Ack)
    assert result.get(timeout=1) == 5
    tid = result.id
    assert calls == [
        ("before_start", tid, [2], {"y": 3}),
        ("run", 2, 3),
        ("on_success", 5, tid, [2], {"y": 3}),
        ("after_return", "SUCCESS", tid),
    ]


def test_failure_and_retry_handlers(cloudq_app: App) -> None:
    calls: Calls = []

    @cloudq_app.task(
        base=recording_base(calls),
        autoretry_for=(KeyError,),
        max_retries=1,
        default_retry_delay=0,
    )
    def flaky() -> None:
        raise KeyError("x")

    result = flaky.delay()
    assert isinstance(process_one(cloudq_app), RetryAt)
    tid = result.id
    assert ("on_retry", "KeyError", tid) in calls
    assert not any(c[0] == "after_return" for c in calls)  # Celery: none for a retry
    calls.clear()
    eager = flaky.apply()
    assert eager.state == "FAILURE"
    assert [c[0] for c in calls] == [
        "before_start",
        "on_retry",
        "before_start",
        "on_failure",
        "after_return",
    ]
    assert calls[3][1] == "KeyError" and calls[3][3] is KeyError
    assert calls[4][1] == "FAILURE"


def test_handlers_run_under_task_always_eager(cloudq_app: App) -> None:
    calls: Calls = []
    cloudq_app.conf.task_always_eager = True

    @cloudq_app.task(base=recording_base(calls))
    def ping() -> str:
        return "pong"

    assert ping.delay().get() == "pong"
    assert [c[0] for c in calls] == ["before_start", "on_success", "after_return"]


def test_a_raising_handler_is_logged_and_loses_nothing(
    cloudq_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Task[Any, Any]):
        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            raise RuntimeError("handler bug")

    @cloudq_app.task(base=Broken)
    def one() -> int:
        return 1

    result = one.delay()
    with caplog.at_level(logging.ERROR):
        assert isinstance(process_one(cloudq_app), Ack)
    assert result.get(timeout=1) == 1
    assert "handler bug" in caplog.text and "on_success" in caplog.text


def test_class_based_task_registered_with_register_task(cloudq_app: App) -> None:
    direct: list[bool] = []

    class Multiply(cloudq_app.Task):  # type: ignore[name-defined,misc]
        name = "shop.multiply"
        max_retries = 7
        default_retry_delay = 12
        queue = "math"
        rate_limit = "5/s"
        time_limit = 40
        soft_time_limit = 30
        ignore_result = False

        def run(self, x: int, y: int) -> int:
            direct.append(self.request.called_directly)
            return x * y

    task = cloudq_app.register_task(Multiply())
    assert cloudq_app.tasks["shop.multiply"] is task
    assert task.max_retries == 7 and task.default_retry_delay == 12
    assert (task.time_limit, task.soft_time_limit) == (40, 30)
    assert task.retry_policy().max_retries == 7
    assert task(3, 4) == 12
    result = task.delay(6, 7)
    assert process_one(cloudq_app, "math") is not None
    assert result.get(timeout=1) == 42
    assert direct == [True, False]


def test_app_task_subclass_attributes_are_defaults_the_decorator_overrides(
    cloudq_app: App,
) -> None:
    class Patient(cloudq_app.Task):  # type: ignore[name-defined,misc]
        autoretry_for = (ConnectionError,)
        retry_kwargs = {"max_retries": 5}  # noqa: RUF012 - as Celery code writes it
        retry_backoff = True
        queue = "slow"

    @cloudq_app.task(base=Patient, queue="fast")
    def fetch() -> None: ...

    assert isinstance(fetch, Patient)
    assert fetch.options.autoretry_for == (ConnectionError,)
    assert fetch.options.queue == "fast"
    assert fetch.options.retry_backoff is True


def test_bind_true_gets_the_task_instance(cloudq_app: App) -> None:
    class Base(Task[Any, Any]):
        greeting = "hi"

    @cloudq_app.task(bind=True, base=Base)
    def hello(self: Base, who: str) -> str:
        return f"{self.greeting} {who} from {self.name}"

    assert hello.apply(args=("ann",)).get() == f"hi ann from {hello.name}"


def test_shared_task_with_base() -> None:
    calls: Calls = []

    @shared_task(base=recording_base(calls))
    def double(x: int) -> int:
        return 2 * x

    app = App("shared-base", broker="memory://shared-base", backend="memory://shared-base")
    try:
        assert double.apply(args=(4,)).get() == 8
        assert [c[0] for c in calls] == ["before_start", "on_success", "after_return"]
    finally:
        app.close()


def test_app_task_setter_changes_the_default_base(cloudq_app: App) -> None:
    calls: Calls = []
    cloudq_app.Task = recording_base(calls)

    @cloudq_app.task
    def one() -> int:
        return 1

    one.apply()
    assert calls and calls[0][0] == "before_start"


def test_acks_late_false_says_what_cloudq_does(cloudq_app: App) -> None:
    with pytest.raises(ConfigurationError, match="after the task"):

        @cloudq_app.task(acks_late=False)
        def early() -> None: ...

    @cloudq_app.task(acks_late=True)
    def late() -> None: ...


def test_typing_false_skips_argument_checks(cloudq_app: App) -> None:
    @cloudq_app.task(typing=False)
    def loose(x: int) -> Any:
        return x

    assert loose.apply(args=("not an int",)).get() == "not an int"


def test_dead_letter_still_calls_on_failure_in_the_worker(cloudq_app: App) -> None:
    calls: Calls = []

    @cloudq_app.task(base=recording_base(calls))
    def boom() -> None:
        raise ValueError("no")

    boom.delay()
    assert isinstance(process_one(cloudq_app), DeadLetter)
    assert [c[0] for c in calls] == ["before_start", "on_failure", "after_return"]
