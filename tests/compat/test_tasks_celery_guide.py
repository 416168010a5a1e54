"""Celery's tasks guide (docs/userguide/tasks.rst) and t/integration/tasks.py, ported: each
example is Celery's code with only its imports changed (``examples/tasks_guide``,
``examples/celery_integration``), run on ``memory://`` by a worker thread, or stepped with a
fake clock where the example waits minutes between retries."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.clock import FakeClock
from cloudq.outcome import Ack, DeadLetter, Defer, RetryAt
from cloudq.testing import process_one, start_worker

Example = Callable[[str], Path]


def fresh(app: App, clock: FakeClock | None = None) -> App:
    """A private broker and store for this test (the example names a shared one)."""
    name = uuid.uuid4().hex
    app.conf.broker_url = f"memory://{name}"
    app.conf.result_backend = f"memory://{name}"
    if clock is not None:
        app.clock = clock
    return app


def guide(example: Example, module: str, clock: FakeClock | None = None) -> Any:
    example("tasks_guide")
    fresh(importlib.import_module("guide_app").app, clock)
    return importlib.import_module(module)


def services() -> Any:
    return importlib.import_module("services")


# --- the tasks guide ------------------------------------------------------------------------
def test_bound_task_logs_its_request_id(example: Example, caplog: pytest.LogCaptureFixture) -> None:
    bound = guide(example, "bound")
    with start_worker(bound.app), caplog.at_level("INFO", logger="bound"):
        result = bound.add.delay(1, 2)
        assert result.get(timeout=10) is None
    assert result.id in caplog.text


def test_base_class_on_failure(example: Example, capsys: pytest.CaptureFixture[str]) -> None:
    inheritance = guide(example, "inheritance")
    with start_worker(inheritance.app):
        result = inheritance.add.delay(1, 2)
        with pytest.raises(KeyError):
            result.get(timeout=10)
    assert f"{result.id!r} failed: KeyError()" in capsys.readouterr().out


def test_request_args_and_kwargs(example: Example, capsys: pytest.CaptureFixture[str]) -> None:
    request_info = guide(example, "request_info")
    with start_worker(request_info.app):
        result = request_info.dump_context.apply_async((1,), {"y": 2})
        result.get(timeout=10)
    assert f"Executing task id {result.id}, args: [1] kwargs: {{'y': 2}}" in (
        capsys.readouterr().out
    )


def test_retry_with_exc(example: Example) -> None:
    clock = FakeClock()
    retrying = guide(example, "retrying", clock)
    services().Twitter.failures = 1
    result = retrying.send_twitter_status.delay("token", "hello")
    assert isinstance(process_one(retrying.app), RetryAt)
    clock.advance(retrying.send_twitter_status.default_retry_delay)
    assert isinstance(process_one(retrying.app), Ack)
    assert result.get(timeout=1) is None


def test_custom_retry_delay_and_countdown(example: Example) -> None:
    clock = FakeClock()
    retrying = guide(example, "retrying", clock)
    assert retrying.add.default_retry_delay == 30 * 60
    retrying.add.delay(1, 2)
    outcome = process_one(retrying.app)
    assert isinstance(outcome, RetryAt) and outcome.when - clock.now() == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("module", "retries"), [("autoretry", 3), ("autoretry_kwargs", 5), ("autoretry_manual", 5)]
)
def test_autoretry_for_and_retry_kwargs(example: Example, module: str, retries: int) -> None:
    """The three refresh_timeline examples: autoretry_for (the app's 3 retries), with
    retry_kwargs={'max_retries': 5}, and the manual retry(exc=exc, max_retries=5)."""
    clock = FakeClock()
    mod = guide(example, module, clock)
    services().Twitter.failures = 100
    result = mod.refresh_timeline.delay("ann")
    outcomes = []
    for _ in range(retries + 1):
        outcomes.append(process_one(mod.app))
        clock.advance(3600)
    assert [type(o) for o in outcomes] == [RetryAt] * retries + [DeadLetter]
    with pytest.raises(Exception, match="fail whale"):
        result.get(timeout=1)


def test_base_task_with_retry_class_attributes(example: Example) -> None:
    clock = FakeClock()
    retry_base = guide(example, "retry_base", clock)
    start = clock.now()
    retry_base.x.delay()
    waits = []
    for _ in range(6):
        outcome = process_one(retry_base.app)
        if isinstance(outcome, RetryAt):
            waits.append((outcome.when - clock.now()).total_seconds())
            clock.advance(waits[-1])
    assert waits == [1, 2, 4, 8, 16]  # max_retries=5, exact backoff, jitter off
    assert clock.now() - start == timedelta(seconds=31)


def test_pydantic_tasks(example: Example) -> None:
    pydantic_tasks = guide(example, "pydantic_tasks")
    with start_worker(pydantic_tasks.app):
        assert pydantic_tasks.x.delay({"value": 1}).get(timeout=10) == {"value": "example: 1"}
        assert pydantic_tasks.optional_x.delay().get(timeout=10) is None
        result = pydantic_tasks.optional_x.delay({"value": 1})
        assert result.get(timeout=10) == {"value": "example: 1"}


def test_custom_state_progress(example: Example) -> None:
    custom_states = guide(example, "custom_states")
    app = custom_states.app
    seen: list[tuple[str, Any]] = []
    store = app.backend.store

    def spy(record: Any, expires: Any) -> None:
        seen.append((record.state, record.result))
        store(record, expires)

    app.backend.store = spy
    result = custom_states.upload_files.delay(["a", "b"])
    process_one(app)
    assert seen == [
        ("PROGRESS", {"current": 0, "total": 2}),
        ("PROGRESS", {"current": 1, "total": 2}),
        ("SUCCESS", None),
    ]
    assert result.state == "SUCCESS"
    custom_states.upload_files(["c"])  # called directly: no state written
    assert len(seen) == 3


def test_ignore(example: Example) -> None:
    predicates = guide(example, "predicates")
    services().redis.revoked.add("revoked-id")
    with start_worker(predicates.app) as worker:
        ignored = predicates.some_task.apply_async(task_id="revoked-id")
        ran = predicates.some_task.apply_async()
        assert ran.get(timeout=10) is None
        assert worker  # the ignored one was acknowledged: nothing dead-lettered, no record
    assert ignored.state == "PENDING"
    assert predicates.app.broker.receive("default-dlq", 10, 0, 30) == []


def test_ignore_after_storing_success(example: Example) -> None:
    predicates = guide(example, "predicates")
    with start_worker(predicates.app):
        result = predicates.get_tweets.delay("ann")
        assert result.get(timeout=10) == ["ann: hello"]


def test_reject_and_retry_in_render_scene(example: Example) -> None:
    clock = FakeClock()
    predicates = guide(example, "predicates", clock)
    app = predicates.app
    huge = predicates.render_scene.delay("huge.blend")
    assert isinstance(process_one(app), DeadLetter)
    with pytest.raises(Exception, match="out of memory"):
        huge.get(timeout=1)
    broken = predicates.render_scene.delay("broken.blend")
    outcome = process_one(app)
    assert isinstance(outcome, RetryAt) and outcome.when - clock.now() == timedelta(seconds=10)
    assert broken.state == "RETRY"
    fine = predicates.render_scene.delay("scene.blend")
    assert isinstance(process_one(app), Ack) and fine.state == "SUCCESS"


def test_reject_requeue_then_redelivered(
    example: Example, capsys: pytest.CaptureFixture[str]
) -> None:
    predicates = guide(example, "predicates")
    result = predicates.requeues.delay()
    assert isinstance(process_one(predicates.app), Defer)
    assert isinstance(process_one(predicates.app), Ack)
    assert result.state == "SUCCESS"
    assert "received two times" in capsys.readouterr().out


def test_class_based_task_with_own_init(example: Example) -> None:
    custom_classes = guide(example, "custom_classes")
    app = custom_classes.app
    task = app.register_task(custom_classes.NaiveAuthenticateServer())
    with start_worker(app):
        assert task.delay("george", "password").get(timeout=10) is True
        assert task.delay("bob", "x").get(timeout=10) is False


def test_database_task_base_connects_once(example: Example) -> None:
    custom_classes = guide(example, "custom_classes")
    db = services().Database
    db.connections = 0
    with start_worker(custom_classes.app):
        custom_classes.process_rows.delay().get(timeout=10)
        custom_classes.process_rows.delay().get(timeout=10)
    assert db.connections == 1
    assert services().calls.count(("row", 1)) == 2


def test_handlers_example_order(example: Example, capsys: pytest.CaptureFixture[str]) -> None:
    custom_classes = guide(example, "custom_classes")
    with start_worker(custom_classes.app):
        result = custom_classes.handled.delay(21)
        assert result.get(timeout=10) == 42
    lines = [line for line in capsys.readouterr().out.splitlines() if result.id in line]
    assert lines == [
        f"Task {result.id} starting with args [21]",
        f"Task {result.id} succeeded with result: 42",
        f"Task {result.id} finished with status: SUCCESS",
    ]


def test_serializer_json_and_ignore_result(example: Example) -> None:
    custom_classes = guide(example, "custom_classes")
    with start_worker(custom_classes.app):
        assert custom_classes.create_user.delay("ann", "pw").get(timeout=10) is None
        ignored = custom_classes.mytask.delay()
        ran = custom_classes.create_user.delay("after", "pw")
        ran.get(timeout=10)
    assert ("user", "ignored") in services().calls
    assert ignored.state == "PENDING"  # ignore_result: nothing stored


# --- t/integration/tasks.py -----------------------------------------------------------------
@pytest.fixture
def integration(example: Example) -> tuple[App, Any]:
    example("celery_integration")
    name = uuid.uuid4().hex
    app = App("t", broker=f"memory://{name}", backend=f"memory://{name}", clock=FakeClock())
    return app, importlib.import_module("integration_tasks")


def test_integration_simple_tasks(integration: tuple[App, Any]) -> None:
    app, tasks = integration
    with start_worker(app):
        assert tasks.identity.delay("x").get(timeout=10) == "x"
        assert tasks.add.delay(1, 2, z=3).get(timeout=10) == 6
        assert tasks.mul.delay(3, 4).get(timeout=10) == 12
        assert tasks.add_not_typed.delay("a", "b").get(timeout=10) == "ab"
        root, parent, i = tasks.ids.delay(5).get(timeout=10)
        assert (parent, i) == (None, 5) and root
        assert tasks.return_priority.apply_async(priority=7).get(timeout=10) == "Priority: 7"
        assert tasks.add_pydantic.delay({"x": 1, "y": 2}).get(timeout=10) == {"result": 3}
        string_hints = tasks.add_pydantic_string_annotations.delay({"x": 2, "y": 2})
        assert string_hints.get(timeout=10) == {"result": 4}
        ignored = tasks.add_ignore_result.delay(1, 1)
        assert tasks.identity.delay("after").get(timeout=10) == "after"
    assert ignored.state == "PENDING"


def step(app: App, clock: FakeClock, times: int) -> list[Any]:
    outcomes = []
    for _ in range(times):
        outcomes.append(process_one(app))
        clock.advance(10)
    return outcomes


def test_integration_retries(integration: tuple[App, Any]) -> None:
    app, tasks = integration
    clock = app.clock
    assert isinstance(clock, FakeClock)
    counted = tasks.retry.delay(return_value="done")
    step(app, clock, 4)
    assert counted.get(timeout=1) == "done"
    failing = tasks.retry.delay()
    assert [type(o) for o in step(app, clock, 4)] == [RetryAt] * 3 + [DeadLetter]
    with pytest.raises(tasks.ExpectedException):
        failing.get(timeout=1)
    once = tasks.retry_once.delay()
    step(app, clock, 2)
    assert once.get(timeout=1) == 1
    priority = tasks.retry_once_priority.apply_async(priority=5)
    step(app, clock, 2)
    assert priority.get(timeout=1) == 5
    headers = tasks.retry_once_headers.apply_async(headers={"tenant": "a"})
    step(app, clock, 2)
    assert headers.get(timeout=1) == {"tenant": "a"}


def test_integration_class_based_autoretry(integration: tuple[App, Any]) -> None:
    app, tasks = integration
    task = app.register_task(tasks.ClassBasedAutoRetryTask())
    assert task.name == "auto_retry_class_task" and app.tasks["auto_retry_class_task"] is task
    result = task.delay()
    step(app, app.clock, 2)  # type: ignore[arg-type]
    assert result.get(timeout=1) == 1


def test_integration_rejections(integration: tuple[App, Any]) -> None:
    app, tasks = integration
    with start_worker(app):
        assert tasks.reject_then_succeed.delay().get(timeout=10) == "second-pass"
        with pytest.raises(Exception, match="rejected"):
            tasks.reject_without_requeue.delay().get(timeout=10)
