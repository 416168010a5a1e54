"""Issue 24: ``AsyncResult`` as Celery's users read it: no app named, ``parent``, ``children``,
``info`` (a custom state's meta), ``date_done``, ``name``, ``wait()``, and Celery's ``get()``
arguments, including its guard against waiting on a task from inside a task."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from cloudq import App, AsyncResult, ConfigurationError, GroupResult
from cloudq.results.base import ErrorInfo, State, TaskResult
from cloudq.testing import process_one, start_worker, wait_for


def _app(**settings: Any) -> App:
    name = f"results-api-{uuid.uuid4().hex[:8]}"
    settings.setdefault("backend", f"memory://{name}")
    return App(name, broker=f"memory://{name}", **settings)


@pytest.fixture
def app() -> App:
    return _app()


def test_async_result_without_an_app_reads_through_the_current_one(app: App) -> None:
    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    sent = add.delay(2, 2)
    process_one(app)
    assert AsyncResult(sent.id).app is app
    assert AsyncResult(sent.id).get(timeout=1) == 4
    assert app.AsyncResult(sent.id).get(timeout=1) == 4
    other = _app()  # the newest app is current, as in Celery
    assert AsyncResult(sent.id).app is other
    app.set_current()
    assert AsyncResult(sent.id).state == State.SUCCESS


def test_name_date_done_args_and_wait(app: App) -> None:
    @app.task(name="tasks.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    result = mul.delay(3, 4)
    assert result.date_done is None and result.info is None and result.parent is None
    process_one(app)
    assert result.wait(timeout=1) == 12
    assert isinstance(result.date_done, datetime)
    assert app.AsyncResult(result.id).name == "tasks.mul"
    assert (result.args, result.kwargs) == (None, None)  # Celery's default: not extended
    assert result.get(timeout=1, propagate=True, interval=0.1, disable_sync_subtasks=True) == 12


def test_info_is_a_custom_states_meta(app: App) -> None:
    backend = app.backend
    assert backend is not None
    meta = {"current": 3, "total": 10}
    backend.store(TaskResult(task_id="p", state="PROGRESS", task="tasks.long", result=meta), None)
    result = AsyncResult("p", app)
    assert (result.state, result.info, result.result, result.ready()) == (
        "PROGRESS",
        meta,
        meta,
        False,
    )
    with pytest.raises(TimeoutError, match="PROGRESS"):
        result.get(timeout=0.05)


def test_children_are_the_tasks_sent_while_it_ran(app: App) -> None:
    @app.task(name="tasks.leaf")
    def leaf(x: int) -> int:
        return x * 10

    @app.task(name="tasks.fan")
    def fan(n: int) -> int:
        for i in range(n):
            leaf.delay(i)
        return n

    with start_worker(app, queues=["default"]):
        result = fan.delay(3)
        assert result.get(timeout=10) == 3
        children = result.children
        assert len(children) == 3
        assert sorted(c.get(timeout=10) for c in children) == [0, 10, 20]
        assert all(c.children == [] for c in children)
    from cloudq.results.children import _pending

    assert not _pending, "nothing is left noted once the records are written"


def test_children_are_not_noted_without_results() -> None:
    app = _app(backend=None)

    @app.task(name="tasks.leaf")
    def leaf(x: int) -> int:
        return x

    @app.task(name="tasks.fan")
    def fan() -> None:
        leaf.delay(1)

    fan.delay()
    process_one(app)
    from cloudq.results.children import _pending

    assert not _pending


def test_get_inside_a_task_raises_as_celery_does(app: App) -> None:
    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.blocking")
    def blocking() -> str:
        try:
            add.delay(1, 1).get(timeout=5)
        except RuntimeError as exc:
            return str(exc)
        return "waited"

    @app.task(name="tasks.allowed")
    def allowed() -> int:
        return int(add.delay(1, 1).get(timeout=5, disable_sync_subtasks=False))

    with start_worker(app, queues=["default"], concurrency=2):
        assert blocking.delay().get(timeout=10).startswith("Never call result.get() within a task")
        assert allowed.delay().get(timeout=10) == 2


def test_get_follows_a_failed_parent(app: App) -> None:
    @app.task(name="tasks.boom", max_retries=0)
    def boom() -> int:
        raise KeyError("no such order")

    parent = boom.delay()
    process_one(app)
    child = AsyncResult("never-sent", app, parent=parent)
    assert child.parent is parent
    with pytest.raises(KeyError, match="no such order"):
        child.get(timeout=5, interval=0.05)
    with pytest.raises(TimeoutError):
        child.get(timeout=0.1, follow_parents=False)


def test_a_link_with_its_id_known_is_among_the_children(app: App) -> None:
    """canvas guide: ``res = add.apply_async((2, 2), link=mul.s(16))``; ``res.children[0]
    .get()`` is 64 (cloudq: ``sig.link(...)``; a chain assigns its ids up front the same way)."""

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    sig = add.s(2, 2)
    sig.link(mul.s(16).set(task_id="callback"))
    res = sig.apply_async()
    process_one(app)
    assert res.get(timeout=1) == 4
    assert [c.id for c in res.children] == ["callback"]
    process_one(app)
    assert res.children[0].get(timeout=1) == 64


def test_an_errback_reads_the_failed_result_as_the_canvas_guide_does(app: App) -> None:
    """canvas guide, ``log_error``: ``app.AsyncResult(task_id)``, ``get(propagate=False)``,
    then ``result.result`` and ``result.traceback``, inside a task (done: it cannot block)."""
    seen: list[tuple[str, str]] = []

    @app.task(name="tasks.boom", max_retries=0)
    def boom() -> int:
        raise ValueError("something something")

    @app.task(name="tasks.log_error")
    def log_error(task_id: str) -> None:
        result = app.AsyncResult(task_id)
        result.get(propagate=False)  # make sure result written.
        seen.append((repr(result.result), result.traceback or ""))

    sig = boom.s()
    sig.link_error(log_error.s())
    failed = sig.apply_async()
    with start_worker(app, queues=["default"]):
        with pytest.raises(ValueError):
            failed.get(timeout=10)
        wait_for(lambda: seen, timeout=10, message="log_error ran")
    assert seen[0][0] == "ValueError('something something')"
    assert "something something" in seen[0][1]


@pytest.mark.parametrize("option", ["callback", "on_message", "on_interval"])
def test_celerys_streaming_callbacks_fail_saying_what_to_write(app: App, option: str) -> None:
    with pytest.raises(ConfigurationError, match=r"result\.info"):
        AsyncResult("any", app).get(timeout=0, **{option: print})
    with pytest.raises(ConfigurationError, match=option):
        GroupResult("g", [AsyncResult("any", app)]).join(timeout=0, **{option: print})
    with pytest.raises(TypeError, match="no_such_option"):
        AsyncResult("any", app).get(timeout=0, no_such_option=1)


def test_retry_state_info_is_the_exception_and_eager_results_read_alike(app: App) -> None:
    backend = app.backend
    assert backend is not None
    error = ErrorInfo(type="builtins.ConnectionError", message="flaky")
    backend.store(TaskResult(task_id="r", state=State.RETRY, error=error), None)
    assert isinstance(AsyncResult("r", app).info, ConnectionError)

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    eager = add.apply((2, 3))
    assert (eager.info, eager.wait(timeout=1, disable_sync_subtasks=False)) == (5, 5)
    assert (eager.parent, eager.children, eager.status) == (None, [], State.SUCCESS)
