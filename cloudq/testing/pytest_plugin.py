"""pytest fixtures for apps (like celery.contrib.pytest). Enable with
``pytest_plugins = ["cloudq.testing.pytest_plugin"]`` in your conftest.py.

``cloudq_app`` is an App on a private in-memory broker and result store; override the
``cloudq_config`` fixture to change settings. ``cloudq_worker`` runs a real worker for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cloudq.app import App
from cloudq.testing import start_worker
from cloudq.worker import Worker


@pytest.fixture
def cloudq_config() -> dict[str, Any]:
    """Settings for ``cloudq_app``; override in a conftest to change them."""
    return {}


@pytest.fixture
def cloudq_app(cloudq_config: dict[str, Any]) -> Iterator[App]:
    name = uuid.uuid4().hex[:12]
    settings = {"broker": f"memory://{name}", "backend": f"memory://{name}", **cloudq_config}
    app = App("test", **settings)
    yield app
    app.close()


@pytest.fixture
def cloudq_worker(cloudq_app: App) -> Iterator[Worker]:
    with start_worker(cloudq_app) as worker:
        yield worker
