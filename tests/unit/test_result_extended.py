"""``result_extended``: records keep the task's arguments and queue, as Celery's do."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cloudq import App
from cloudq.results.base import EXTENDED_ARGS_BYTES
from cloudq.testing import process_one


def make_app(**conf: Any) -> App:
    name = f"ext-{uuid.uuid4().hex[:8]}"
    app = App(name, broker=f"memory://{name}", backend=f"memory://{name}")
    app.conf.update(conf)

    @app.task(name="ext.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(name="ext.boom")
    def boom(note: str) -> None:
        raise ValueError(note)

    return app


def run(app: App) -> None:
    while process_one(app) is not None:
        pass


def test_extended_results_keep_arguments_and_queue() -> None:
    app = make_app(result_extended=True)
    ok = app.tasks["ext.add"].delay(2, y=3)
    failed = app.tasks["ext.boom"].apply_async(("bad",), queue="other")
    run(app)
    while process_one(app, "other") is not None:
        pass
    assert ok.get(timeout=1) == 5
    assert (ok.args, ok.kwargs, ok.name, ok.queue) == ([2], {"y": 3}, "ext.add", "default")
    with pytest.raises(ValueError):
        failed.get(timeout=1)
    assert (failed.args, failed.kwargs, failed.queue) == (["bad"], {}, "other")


def test_without_it_records_carry_no_arguments() -> None:
    app = make_app()
    result = app.tasks["ext.add"].delay(2, y=3)
    run(app)
    assert result.get(timeout=1) == 5
    assert (result.args, result.kwargs, result.queue) == (None, None, None)


def test_arguments_over_the_limit_are_not_kept_and_the_record_says_why() -> None:
    app = make_app(result_extended=True)
    result = app.tasks["ext.boom"].delay("x" * EXTENDED_ARGS_BYTES)
    run(app)
    record = app.backend.get(result.id)
    assert record is not None and record.state == "FAILURE"
    assert result.args is None and record.args_omitted is not None
    assert f"over the {EXTENDED_ARGS_BYTES}" in record.args_omitted


def test_celerys_setting_names_turn_it_on() -> None:
    app = App(f"ext-{uuid.uuid4().hex[:8]}", broker="memory://")
    app.config_from_object({"CELERY_RESULT_EXTENDED": True})
    assert app.conf.result_extended is True
