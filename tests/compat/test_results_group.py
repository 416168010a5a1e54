"""Issue 24: ``GroupResult`` as Celery's canvas guide reads it: the counts and predicates,
``join``/``get``, ``save()`` and ``GroupResult.restore(id)`` (refused unsealed or changed when
the app signs), ``revoke()``, ``forget()``, iteration and ``len``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cloudq import App, group
from cloudq.canvas import GroupResult as CanvasGroupResult
from cloudq.errors import SignatureError, TaskRevokedError
from cloudq.result import AsyncResult, GroupResult
from cloudq.results.base import TaskResult
from cloudq.results.groups import group_key
from cloudq.testing import process_one, start_worker


def _app(**settings: Any) -> App:
    name = f"results-group-{uuid.uuid4().hex[:8]}"
    app = App(name, broker=f"memory://{name}", backend=f"memory://{name}", **settings)

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.fail", max_retries=0)
    def fail(why: str) -> int:
        raise ValueError(why)

    return app


def _drain(app: App) -> int:
    ran = 0
    while process_one(app) is not None:
        ran += 1
    return ran


def test_canvas_keeps_calling_the_one_group_result() -> None:
    assert CanvasGroupResult is GroupResult


def test_counts_predicates_join_and_iteration() -> None:
    app = _app()
    add = app.tasks["tasks.add"]
    res = group(add.s(i, i) for i in range(4)).apply_async()
    assert isinstance(res, GroupResult) and len(res) == 4
    assert (res.ready(), res.waiting(), res.completed_count()) == (False, True, 0)
    with pytest.raises(TimeoutError):
        res.join(timeout=0.05)
    with start_worker(app, queues=["default"]):
        assert res.join(timeout=10) == [0, 2, 4, 6]
    assert res.get(timeout=1) == [0, 2, 4, 6]
    assert (res.ready(), res.waiting(), res.successful(), res.failed()) == (
        True,
        False,
        True,
        False,
    )
    assert res.completed_count() == 4
    assert [r.id for r in res] == [r.id for r in res.results]
    assert all(isinstance(r, AsyncResult) for r in res) and res[0].get(timeout=1) == 0


def test_a_failed_member() -> None:
    app = _app()
    res = group(app.tasks["tasks.add"].s(1, 1), app.tasks["tasks.fail"].s("no")).apply_async()
    assert _drain(app) == 2
    assert (res.failed(), res.successful(), res.ready(), res.completed_count()) == (
        True,
        False,
        True,
        1,
    )
    with pytest.raises(ValueError, match="no"):
        res.join(timeout=1)
    value, error = res.join(timeout=1, propagate=False)
    assert value == 2 and isinstance(error, ValueError)


def test_save_and_restore_in_another_app_on_the_same_store() -> None:
    app = _app()
    res = group(app.tasks["tasks.add"].s(i, 1) for i in range(3)).apply_async()
    res.save()
    _drain(app)
    reader = App("reader", broker=app.conf.broker_url, backend=app.conf.result_backend)
    again = GroupResult.restore(res.id, app=reader)
    assert again is not None and again == res
    assert again.get(timeout=1) == [1, 2, 3]
    assert GroupResult.restore(res.id) is not None  # the current app: the reader, made last
    assert GroupResult.restore("no-such-group", app=reader) is None
    res.forget()
    assert GroupResult.restore(res.id, app=reader) is None
    assert all(r.state == "PENDING" for r in again)


def test_restore_refuses_an_unsealed_or_changed_group_when_signing() -> None:
    app = _app(signing_keys=["k1"])
    res = group(app.tasks["tasks.add"].s(1, 1), app.tasks["tasks.add"].s(2, 2)).apply_async()
    res.save()
    assert GroupResult.restore(res.id, app=app) == res
    backend = app.backend
    assert backend is not None
    stored = backend.get(group_key(res.id))
    assert stored is not None and stored.seal
    swapped = stored.model_copy(update={"result": ["someone-elses-task"]})
    backend.store(swapped, None)
    with pytest.raises(SignatureError, match="group"):
        GroupResult.restore(res.id, app=app)
    backend.store(stored.model_copy(update={"seal": None}), None)
    with pytest.raises(SignatureError, match="unsigned"):
        GroupResult.restore(res.id, app=app)
    moved = stored.model_copy(update={"task_id": group_key("other-group")})
    backend.store(moved, None)  # a sealed group copied under another id
    with pytest.raises(SignatureError):
        GroupResult.restore("other-group", app=app)
    backend.store(TaskResult(task_id=group_key("not-a-group"), state="SUCCESS", result=1), None)
    with pytest.raises(SignatureError, match="not a saved group"):
        GroupResult.restore("not-a-group", app=app)


def test_revoke_every_member() -> None:
    app = _app()
    res = group(app.tasks["tasks.add"].s(i, i) for i in range(3)).apply_async()
    res.revoke()
    _drain(app)
    for member in res:
        with pytest.raises(TaskRevokedError):
            member.get(timeout=1)
    assert res.ready() and not res.successful()
