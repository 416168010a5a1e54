"""The Django test project (``tests/django_project``) set up once per test process: its sqlite
file in a temp dir, migrated; the broker SQS on the session's moto server (queues under a
prefix of their own), results in the session's Redis. Django's settings are process-wide, so
every test here shares them, and the worker subprocesses get the same ``SHOP_*`` variables."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import LoggedProcess

PROJECT = Path(__file__).resolve().parents[1] / "django_project"

pytest.importorskip(
    "django", reason="Django is not installed: pip install 'cloudqueue-tasks[django]'"
)


@pytest.fixture(scope="session")
def django_env(
    moto_endpoint: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The environment of the project (for its workers); this process's Django is set up with
    it, and its app's SQS client opened, while it is set."""
    prefix = f"dj{uuid.uuid4().hex[:10]}-"
    missing = str(Path(os.devnull).with_name("cloudq-no-aws-config"))
    env = {
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "SHOP_DB": str(tmp_path_factory.mktemp("django") / "shop.sqlite3"),
        "SHOP_BROKER_URL": f"sqs://?prefix={prefix}",
        "SHOP_RESULT_BACKEND": f"{redis_url}?prefix=cloudq-{prefix}",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": missing,
        "AWS_SHARED_CREDENTIALS_FILE": missing,
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        sys.path.insert(0, str(PROJECT))
        import django
        from django.core.management import call_command

        django.setup()  # reads the SHOP_* variables, once for the process
        call_command("migrate", verbosity=0)
        from proj.cloudq import app

        for queue in ("default", "reports", "lambda", "procs"):
            app.ensure_queue(queue)  # opens the SQS client while AWS_* point at moto
    finally:  # the rest of the session's tests see the environment they had
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return env


@pytest.fixture
def project_app(django_env: dict[str, str]) -> Any:
    """``proj.cloudq.app``, the app of the project, made current for ``@shared_task`` in each
    test (an ``App()`` made by another test becomes current)."""
    from proj.cloudq import app

    app.set_current()
    return app


@pytest.fixture(scope="session")
def worker(django_env: dict[str, str]) -> Iterator[LoggedProcess]:
    """``cloudq -A proj worker`` run from the project's directory, as a user runs it: one
    for the session (queues ``default`` and ``reports``)."""
    env = {**os.environ, **django_env, "PYTHONPATH": str(PROJECT)}
    proc = LoggedProcess.worker("proj", ["-Q", "default,reports", "-c", "2"], env, "django-worker")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()  # every test waited for its tasks: no graceful stop to wait for
