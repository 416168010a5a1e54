"""App idioms of Celery: include and autodiscovery, eager mode, shared tasks, __main__ names."""

from __future__ import annotations

import importlib
import runpy
from collections.abc import Callable
from pathlib import Path

import pytest

from cloudq import App, current_app, shared_task
from cloudq.errors import ConfigurationError, TaskFailed
from cloudq.result import EagerResult
from cloudq.testing import process_one

Example = Callable[[str], Path]


def test_autodiscover_packages_given(example: Example) -> None:
    example("discover")
    app = App("disc", broker="memory://discover")
    app.autodiscover_tasks(["pkg_with_tasks", "pkg_without_tasks"])
    assert "pkg_with_tasks.tasks.ping" not in dict(app.tasks)  # lazy, as Celery's
    app.finalize()
    assert "pkg_with_tasks.tasks.ping" in app.tasks


def test_autodiscover_callable_related_name_and_force(example: Example) -> None:
    example("discover")
    app = App("disc", broker="memory://discover")
    called: list[str] = []

    def packages() -> list[str]:
        called.append("yes")
        return ["pkg_with_tasks", "pkg_without_tasks"]

    app.autodiscover_tasks(packages, related_name="jobs", force=True)
    assert called == ["yes"]
    assert "pkg_with_tasks.jobs.job" in dict(app.tasks)


def test_autodiscover_raises_real_import_errors(example: Example) -> None:
    example("discover")
    app = App("disc", broker="memory://discover")
    with pytest.raises(ModuleNotFoundError, match="a_module_that_is_not_installed"):
        app.autodiscover_tasks(["pkg_broken"], force=True)
    with pytest.raises(ConfigurationError, match="cannot import 'no_such_package'"):
        app.autodiscover_tasks(["no_such_package"], force=True)


def test_autodiscover_without_packages_needs_a_source() -> None:
    app = App("disc", broker="memory://discover")
    app.autodiscover_tasks()
    with pytest.raises(ConfigurationError, match="autodiscover_tasks\\(\\) needs packages"):
        app.finalize()


def test_include_that_cannot_be_imported_is_named() -> None:
    app = App("inc", broker="memory://include", include=["no_such_module.tasks"])
    with pytest.raises(ConfigurationError, match="cannot import include module"):
        app.finalize()
    with pytest.raises(ConfigurationError):  # not silently marked done
        app.finalize()


def test_always_eager_runs_delay_inline() -> None:
    app = App("eager", broker="memory://eager-never-read", task_always_eager=True)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def boom() -> None:
        raise ValueError("no")

    result = add.delay(2, 2)
    assert isinstance(result, EagerResult)
    assert result.get() == 4
    assert process_one(app) is None  # nothing was sent
    failed = boom.apply_async()
    assert failed.state == "FAILURE"
    app.conf.task_eager_propagates = True
    with pytest.raises(ValueError, match="no"):
        boom.delay()
    assert add.apply_async((1, 2), task_id="fixed").id == "fixed"


def test_always_eager_still_checks_arguments() -> None:
    app = App("eager", broker="memory://eager-never-read", CELERY_ALWAYS_EAGER=True)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError):
        add.delay("two", 2)


def test_task_ignore_result_is_the_default_for_tasks_without_their_own() -> None:
    app = App("ign", broker="memory://ignore", backend="memory://ignore")

    @app.task
    def quiet() -> int:
        return 1

    @app.task(ignore_result=False)
    def loud() -> int:
        return 2

    app.conf.task_ignore_result = True
    assert quiet.options.ignore_result is True
    assert loud.options.ignore_result is False


def test_main_module_tasks_are_named_after_the_app(example: Example) -> None:
    path = example("discover") / "main_script.py"
    ns = runpy.run_path(str(path), run_name="__main__")
    assert ns["add"].name == "myapp.add"
    assert ns["mul"].name == "__main__.mul"  # an app with no name keeps __main__, as Celery
    imported = importlib.import_module("main_script")
    assert imported.add.name == "main_script.add"


def test_shared_task_registers_with_existing_and_later_apps() -> None:
    before = App("before", broker="memory://shared")

    @shared_task
    def shared_mul(x: int, y: int) -> int:
        return x * y

    name = f"{__name__}.test_shared_task_registers_with_existing_and_later_apps.<locals>.shared_mul"
    assert name in dict(before.tasks)
    after = App("after", broker="memory://shared")
    assert name in dict(after.tasks)
    assert shared_mul.app is after  # the last created app is current
    before.set_current()
    assert shared_mul.app is before
    assert current_app() is before
    assert shared_mul(3, 4) == 12
    assert shared_mul.name == name


def test_shared_task_of_a_reusable_module_used_by_a_project_app(example: Example) -> None:
    example("discover")
    from pkg_with_tasks.tasks import ping  # type: ignore[import-not-found]

    app = App("project", broker="memory://reusable", task_always_eager=True)
    assert ping.delay().get() == "pong"
    assert ping.app is app
    assert app.tasks["pkg_with_tasks.tasks.ping"] is ping._get_current_object()


def test_shared_task_bind_and_options() -> None:
    app = App("opts", broker="memory://shared-opts", task_always_eager=True)

    @shared_task(bind=True, max_retries=2, name="shared.whoami")
    def whoami(self: object) -> str:
        return type(self).__name__

    assert app.tasks["shared.whoami"].options.max_retries == 2
    assert whoami.delay().get() == "Task"


def test_eager_failure_without_propagation_is_in_the_result() -> None:
    app = App("eager", broker="memory://eager-fail", task_always_eager=True)

    @app.task
    def fail() -> None:
        raise KeyError("gone")

    result = fail.delay()
    with pytest.raises((KeyError, TaskFailed)):
        result.get()


def test_a_message_for_an_unknown_task_never_raises_out_of_the_worker_when_finalize_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app not yet finalized looks up a message's unknown task name: a broken include (or
    a failing on_after_configure receiver) is logged and the message dead-lettered, never
    raised out of the worker."""
    from cloudq.outcome import DeadLetter

    app = App("broken", broker="memory://broken-finalize", include=["no_such_module.tasks"])
    sender = App("sender", broker="memory://broken-finalize")

    @sender.task(name="not.here")
    def not_here() -> None: ...

    not_here.delay()
    outcome = process_one(app)
    assert isinstance(outcome, DeadLetter)
    assert "unknown task 'not.here'" in outcome.reason
    assert any("cannot import include module" in r.getMessage() for r in caplog.records)


def test_imports_setting_adds_to_include_given_to_the_app(example: Example) -> None:
    """Celery imports both ``imports`` and ``include``: a config's imports= must not drop the
    App's include=."""
    example("discover")
    app = App("both", broker="memory://both", include=["pkg_with_tasks.tasks"])
    app.config_from_object({"imports": ("pkg_with_tasks.jobs",)})
    app.finalize()
    assert {"pkg_with_tasks.tasks.ping", "pkg_with_tasks.jobs.job"} <= set(dict(app.tasks))
