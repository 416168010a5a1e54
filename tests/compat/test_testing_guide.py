"""Celery's testing guide (``celery.contrib.pytest`` fixtures and ``start_worker``): each example
written as a user's own test suite, its conftest changed only in the import
(``pytest_plugins = ("cloudq.contrib.pytest",)``) and its broker/backend URLs, and run by
pytest (``pytester``) as that user would run it."""

from __future__ import annotations

import pytest

CONFTEST = """
import pytest

pytest_plugins = ("cloudq.contrib.pytest",)
"""


def run(pytester: pytest.Pytester, conftest: str, tests: str, passed: int) -> None:
    pytester.makeconftest(CONFTEST + conftest)
    pytester.makepyfile(test_ported=tests)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=passed)


def test_celery_app_and_celery_worker(pytester: pytest.Pytester) -> None:
    """celery_app: a task defined in the test, ``celery_worker.reload()``, then ``get()``."""
    run(
        pytester,
        "",
        """
def test_create_task(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    celery_worker.reload()
    assert mul.delay(4, 4).get(timeout=10) == 16
""",
        passed=1,
    )


def test_celery_config_and_the_celery_mark(pytester: pytest.Pytester) -> None:
    """A session ``celery_config`` in the conftest; ``@pytest.mark.celery`` overrides it for
    one test; shared tasks bind to the test app."""
    run(
        pytester,
        """
@pytest.fixture(scope="session")
def celery_config():
    return {"broker_url": "memory://guide", "result_backend": "memory://guide",
            "task_default_queue": "guide"}
""",
        """
import pytest
from cloudq import shared_task


@shared_task
def mytask():
    return "done"


def test_add(celery_app, celery_worker):
    assert celery_app.conf.task_default_queue == "guide"
    assert mytask.delay().get(timeout=10) == "done"


@pytest.mark.celery(task_default_queue="other")
def test_other(celery_app, celery_worker):
    assert celery_app.conf.task_default_queue == "other"
    assert celery_worker.queues == ["other"]
    assert mytask.delay().get(timeout=10) == "done"
""",
        passed=2,
    )


def test_worker_parameters_queues_and_exclude_queues(pytester: pytest.Pytester) -> None:
    """``celery_worker_parameters`` with ``queues`` and ``exclude_queues``."""
    run(
        pytester,
        """
@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {
        "queues": ("high-prio", "low-prio", "celery"),
        "exclude_queues": ("celery"),
    }
""",
        """
def test_queues(celery_app, celery_worker):
    @celery_app.task(queue="high-prio")
    def urgent():
        return 1

    assert celery_worker.queues == ["high-prio", "low-prio"]
    assert urgent.delay().get(timeout=10) == 1
""",
        passed=1,
    )


def test_session_app_and_session_worker(pytester: pytest.Pytester) -> None:
    """``celery_session_worker``: one worker for the session; two tests use it."""
    run(
        pytester,
        """
@pytest.fixture(scope="session")
def celery_config():
    return {"broker_url": "memory://session", "result_backend": "memory://session"}
""",
        """
from cloudq import shared_task


@shared_task
def add(x, y):
    return x + y


def test_add_task(celery_session_worker):
    assert add.delay(2, 2).get(timeout=10) == 4


def test_add_task_again(celery_session_worker, celery_session_app):
    assert add.delay(3, 3).get(timeout=10) == 6
    assert celery_session_app.conf.broker_url == "memory://session"
""",
        passed=2,
    )


def test_includes_and_enable_logging(pytester: pytest.Pytester) -> None:
    """``celery_includes`` imports task modules when the test app exists."""
    pytester.makepyfile(
        guide_tasks="""
from cloudq import shared_task


@shared_task
def hello(name):
    return f"hello {name}"
"""
    )
    pytester.syspathinsert()
    run(
        pytester,
        """
@pytest.fixture(scope="session")
def celery_includes():
    return ["guide_tasks"]


@pytest.fixture(scope="session")
def celery_enable_logging():
    return True
""",
        """
def test_included(celery_app, celery_worker):
    import guide_tasks

    assert "guide_tasks.hello" in celery_app.tasks
    assert guide_tasks.hello.delay("you").get(timeout=10) == "hello you"
""",
        passed=1,
    )


def test_start_worker_context_manager(pytester: pytest.Pytester) -> None:
    """``celery.contrib.testing.worker.start_worker`` in a test's own fixture."""
    run(
        pytester,
        "",
        """
from cloudq import App as Celery
from cloudq.contrib.testing.worker import start_worker

app = Celery("proj", broker="memory://start-worker", backend="memory://start-worker")


@app.task
def double(x):
    return 2 * x


def test_with_start_worker():
    with start_worker(app, perform_ping_check=False, shutdown_timeout=5) as worker:
        assert worker.ready.is_set()
        assert double.delay(21).get(timeout=10) == 42
""",
        passed=1,
    )
