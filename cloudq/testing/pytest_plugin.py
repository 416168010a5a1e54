"""pytest fixtures for apps, with ``celery.contrib.pytest``'s names and meaning.

Enable with ``pytest_plugins = ("cloudq.contrib.pytest",)`` in the root conftest.py (the module
``cloudq.testing.pytest_plugin`` is the same plugin). Celery's fixtures keep their names, so a
ported test suite runs unchanged: ``celery_app`` (an App on a private in-memory broker and
result store, current while the test runs, so ``@shared_task`` binds to it), ``celery_worker``
(a real worker in a thread), the session-scoped ``celery_session_app`` / ``celery_session_worker``,
and the override points ``celery_config``, ``celery_parameters``, ``celery_worker_parameters``,
``celery_includes``, ``celery_worker_pool``, ``celery_enable_logging``; the ``celery`` mark
overrides settings for one test or class (``@pytest.mark.celery(task_time_limit=5)``).
``cloudq_app``, ``cloudq_worker`` and ``cloudq_config`` are the same fixtures under cloudq's
names (the ``cloudq`` mark too).
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from cloudq.app import App
from cloudq.routes import app_queues
from cloudq.shared import set_current
from cloudq.testing import start_worker
from cloudq.worker import Worker

POOLS = {"solo": ("threads", 1), "threads": ("threads", None), "prefork": ("processes", None)}
"""Celery's pool names: ``solo`` is one thread; ``prefork`` the processes pool."""

MARKS = ("celery", "cloudq")


def pytest_configure(config: pytest.Config) -> None:
    for mark in MARKS:
        config.addinivalue_line("markers", f"{mark}(**settings): settings for the test app")


def _marked(request: pytest.FixtureRequest) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for mark in MARKS:
        for found in reversed(list(request.node.iter_markers(mark))):  # nearest one wins
            settings.update(found.kwargs)
    return settings


def _make_app(
    config: Mapping[str, Any], parameters: Mapping[str, Any], includes: Sequence[str]
) -> App:
    name = uuid.uuid4().hex[:12]
    settings: dict[str, Any] = {
        "broker_url": f"memory://{name}",
        "result_backend": f"memory://{name}",
        **config,
    }
    app = App(str(parameters.get("main", "celery.tests")), **settings)
    for module in includes:
        importlib.import_module(module)
    set_current(app)
    return app


def _worker(app: App, pool: str, parameters: Mapping[str, Any]) -> Iterator[Worker]:
    if pool not in POOLS:
        raise pytest.UsageError(f"celery_worker_pool {pool!r}: use one of {', '.join(POOLS)}")
    kind, concurrency = POOLS[pool]
    options = dict(parameters)
    options.setdefault("concurrency", concurrency or 2)
    options.pop("perform_ping_check", None)  # the worker is waited for until it receives
    options.pop("without_heartbeat", None)
    options.pop("loglevel", None)
    queues = options.pop("queues", None)
    exclude = options.pop("exclude_queues", ())
    if exclude:
        skip = {exclude} if isinstance(exclude, str) else set(exclude)
        queues = [q for q in (queues or app_queues(app)) if q not in skip]
    with start_worker(app, queues=queues, pool=kind, **options) as worker:  # type: ignore[arg-type]
        yield worker


# --- override points (session scope, as Celery's) ------------------------------------------------
@pytest.fixture(scope="session")
def celery_config() -> dict[str, Any]:
    """Settings for the test app (Celery's names or cloudq's); override in a conftest."""
    return {}


@pytest.fixture(scope="session")
def celery_parameters() -> dict[str, Any]:
    """App constructor parameters other than settings (``main``)."""
    return {}


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, Any]:
    """Worker parameters: ``queues``, ``exclude_queues``, ``concurrency``, ``shutdown_timeout``,
    ``prefetch``."""
    return {}


@pytest.fixture(scope="session")
def celery_includes() -> Sequence[str]:
    """Modules imported once the test app exists (task modules, signal handlers)."""
    return ()


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    """``solo`` (default, as Celery's), ``threads`` or ``prefork`` (the processes pool)."""
    return "solo"


@pytest.fixture(scope="session")
def celery_enable_logging() -> bool:
    """True: the worker logs at INFO while tests run (pytest captures it)."""
    return False


@pytest.fixture
def cloudq_config(celery_config: dict[str, Any]) -> dict[str, Any]:
    """cloudq's name for the settings; by default ``celery_config``'s."""
    return celery_config


# --- apps and workers -----------------------------------------------------------------------------
@pytest.fixture
def cloudq_app(
    request: pytest.FixtureRequest,
    cloudq_config: dict[str, Any],
    celery_parameters: dict[str, Any],
    celery_includes: Sequence[str],
) -> Iterator[App]:
    """An App on a private ``memory://`` broker and result store, current for the test."""
    app = _make_app({**cloudq_config, **_marked(request)}, celery_parameters, celery_includes)
    yield app
    app.close()


@pytest.fixture
def celery_app(cloudq_app: App) -> App:
    """Celery's name for ``cloudq_app``."""
    return cloudq_app


@pytest.fixture
def cloudq_worker(
    cloudq_app: App,
    celery_worker_pool: str,
    celery_worker_parameters: dict[str, Any],
    celery_enable_logging: bool,
) -> Iterator[Worker]:
    """A real worker for ``cloudq_app`` in a thread, receiving when the test starts; stopped
    gracefully (running tasks finish) when it ends."""
    if celery_enable_logging:
        logging.getLogger("cloudq").setLevel(logging.INFO)
    yield from _worker(cloudq_app, celery_worker_pool, celery_worker_parameters)


@pytest.fixture
def celery_worker(cloudq_worker: Worker) -> Worker:
    """Celery's name for ``cloudq_worker``."""
    return cloudq_worker


@pytest.fixture(scope="session")
def celery_session_app(
    celery_config: dict[str, Any],
    celery_parameters: dict[str, Any],
    celery_includes: Sequence[str],
) -> Iterator[App]:
    """One App for the whole session (its tasks and queues are shared by every test)."""
    app = _make_app(celery_config, celery_parameters, celery_includes)
    yield app
    app.close()


@pytest.fixture(scope="session")
def celery_session_worker(
    celery_session_app: App,
    celery_worker_pool: str,
    celery_worker_parameters: dict[str, Any],
) -> Iterator[Worker]:
    """One worker for ``celery_session_app``, for the whole session."""
    yield from _worker(celery_session_app, celery_worker_pool, celery_worker_parameters)


@pytest.fixture(scope="session")
def use_celery_app_trap() -> bool:
    """Accepted for ported conftests; there is no trap: code that needs an app and names none
    gets the current one (the test app while a test uses ``celery_app``)."""
    return False


@pytest.fixture
def depends_on_current_app(celery_app: App) -> App:
    """The test app made current, for code that reads the current app."""
    set_current(celery_app)
    return celery_app
