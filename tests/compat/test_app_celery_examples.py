"""Celery's documented examples, changed only in the import and the broker URL (issue 24).

Each test imports the example from ``examples/`` by the names Celery's docs use and runs what
the docs run next, on ``memory://``. The routing and periodic-tasks guides' examples are in
``test_app_routes.py`` and ``test_periodic_celery_guide.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloudq.outcome import Ack
from cloudq.testing import process_one

Example = Callable[[str], Path]


def run_one(app: Any, queue: str | None = None) -> None:
    outcome = process_one(app, queue)
    assert outcome is not None, f"nothing to run on {queue or app.conf.task_default_queue}"


def test_first_steps_tasks_py(example: Example) -> None:
    """first-steps: tasks.py with a result backend, add.delay(4, 4), ready(), get()."""
    example("first_steps")
    tasks = importlib.import_module("tasks")
    assert "tasks.add" in tasks.app.tasks
    result = tasks.add.delay(4, 4)
    assert result.ready() is False
    run_one(tasks.app)
    assert result.get(timeout=1) == 8
    assert result.ready() is True


def test_first_steps_celeryconfig_py(example: Example) -> None:
    """first-steps: app.config_from_object('celeryconfig')."""
    example("first_steps")
    tasks = importlib.import_module("tasks")
    tasks.app.config_from_object("celeryconfig")
    conf = tasks.app.conf
    assert conf.timezone == "Europe/Oslo"
    assert conf.broker_url == "memory://first-steps"
    result = tasks.add.delay(2, 3)
    run_one(tasks.app)
    assert result.get(timeout=1) == 5


def test_first_steps_conf_update_and_assignment(example: Example) -> None:
    """first-steps: app.conf.task_serializer = 'json' and the app.conf.update(...) block."""
    example("first_steps")
    app = importlib.import_module("tasks").app
    app.conf.task_serializer = "json"
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # Ignore other content
        result_serializer="json",
        timezone="Europe/Oslo",
        enable_utc=True,
    )
    assert app.conf.timezone == "Europe/Oslo"


def test_first_steps_route_to_a_dedicated_queue(example: Example) -> None:
    """first-steps: task_routes = {'tasks.add': 'low-priority'} in celeryconfig.py."""
    example("first_steps")
    tasks = importlib.import_module("tasks")
    tasks.app.config_from_object("routeconfig")
    result = tasks.add.delay(1, 1)
    assert process_one(tasks.app) is None  # not on the default queue
    run_one(tasks.app, "low-priority")
    assert result.get(timeout=1) == 2


def test_first_steps_rate_limit_by_annotation(example: Example) -> None:
    """first-steps: task_annotations = {'tasks.add': {'rate_limit': '10/m'}}."""
    example("first_steps")
    tasks = importlib.import_module("tasks")
    tasks.app.config_from_object("annotationconfig")
    assert tasks.add.options.rate_limit == "10/m"
    assert tasks.add.rate is not None
    assert (tasks.add.rate.count, tasks.add.rate.per_seconds) == (10.0, 60)


def test_next_steps_proj_celery_py(example: Example) -> None:
    """next-steps: proj/celery.py with include= and app.conf.update(result_expires=3600);
    `from proj.tasks import add` after the worker found the tasks through include."""
    example("next_steps")
    app = importlib.import_module("proj.celery").app
    assert app.conf.result_expires == 3600.0
    app.finalize()  # what `cloudq -A proj worker` does when it loads the app
    assert {"proj.tasks.add", "proj.tasks.mul", "proj.tasks.xsum"} <= set(app.tasks)
    from proj.tasks import add, xsum  # type: ignore[import-not-found]

    results = [add.delay(4, 4), xsum.delay([1, 2, 3])]
    run_one(app)
    run_one(app)
    assert [r.get(timeout=1) for r in results] == [8, 6]


def test_next_steps_include_is_imported_by_a_worker_lookup(example: Example) -> None:
    """A worker receiving proj.tasks.mul finds it although nothing imported proj.tasks."""
    example("next_steps")
    app = importlib.import_module("proj.celery").app
    assert "proj.tasks" not in __import__("sys").modules
    assert app.tasks["proj.tasks.mul"].name == "proj.tasks.mul"


def test_next_steps_routing(example: Example) -> None:
    """next-steps: app.conf.update(task_routes={'proj.tasks.add': {'queue': 'hipri'}})."""
    example("next_steps")
    app = importlib.import_module("proj.celery").app
    app.conf.update(
        task_routes={
            "proj.tasks.add": {"queue": "hipri"},
        },
    )
    from proj.tasks import add

    result = add.apply_async((2, 2))
    run_one(app, "hipri")
    assert result.get(timeout=1) == 4


def test_configuration_guide_example_file(example: Example) -> None:
    """configuration guide: the example celeryconfig.py (imports=, task_annotations)."""
    example("configuration")
    from cloudq import App as Celery

    app = Celery("configuration")
    app.config_from_object("celeryconfig")
    assert app.conf.imports == ["myapp.tasks"]
    add = app.tasks["myapp.tasks.add"]  # imported through imports=
    assert add.options.rate_limit is None  # the annotation names tasks.add, not this one
    app.conf.task_annotations = {"myapp.tasks.add": {"rate_limit": "10/s"}}
    assert add.options.rate_limit == "10/s"


def test_configuration_guide_annotations_for_every_task() -> None:
    """configuration guide: task_annotations = {'*': {'rate_limit': '10/s'}}."""
    from cloudq import App as Celery

    app = Celery("annotations", broker="memory://annotations")

    @app.task
    def first() -> None: ...

    @app.task(rate_limit="1/s")
    def second() -> None: ...

    app.conf.task_annotations = {"*": {"rate_limit": "10/s"}}
    assert first.options.rate_limit == "10/s"
    assert second.options.rate_limit == "10/s"  # annotations win, as in Celery

    @app.task
    def later() -> None: ...

    assert later.options.rate_limit == "10/s"
    app.conf.task_annotations = {}
    assert second.options.rate_limit == "1/s"
    assert first.options.rate_limit is None


def test_django_first_steps_celery_py(example: Example, capsys: pytest.CaptureFixture[str]) -> None:
    """Django first steps: config_from_object('django.conf:settings', namespace='CELERY'),
    autodiscover_tasks() over INSTALLED_APPS, @shared_task in an app's tasks.py, the bound
    debug_task."""
    example("django_project")
    app = importlib.import_module("proj.celery").app
    assert app.conf.broker_url == "memory://django"
    assert app.conf.timezone == "Europe/Berlin"
    assert app.conf.task_track_started is True
    assert app.conf.task_time_limit == 1800.0
    app.finalize()
    assert {"proj.celery.debug_task", "shop.tasks.add", "shop.tasks.count_widgets"} <= set(
        app.tasks
    )
    from shop.tasks import add  # type: ignore[import-not-found]

    result = add.delay(20, 22)
    run_one(app)
    assert result.get(timeout=1) == 42
    debug = app.tasks["proj.celery.debug_task"]
    assert debug.options.ignore_result is True
    debug.delay()
    outcome = process_one(app)
    assert isinstance(outcome, Ack)
    assert outcome.result is None  # ignore_result=True: nothing stored
    assert "Request: <" in capsys.readouterr().out


def test_next_steps_app_start_runs_the_cloudq_command(
    example: Example, capsys: pytest.CaptureFixture[str]
) -> None:
    """next-steps: `if __name__ == '__main__': app.start()` gives the command for the app."""
    example("next_steps")
    app = importlib.import_module("proj.celery").app
    app.start(["call", "proj.tasks.add", "--args", "[1, 2]"])
    task_id = capsys.readouterr().out.strip()
    run_one(app)
    assert app.AsyncResult(task_id).get(timeout=1) == 3
