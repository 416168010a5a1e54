"""The ``django.tasks`` backend on the other clouds: Django's ``@task`` enqueued to the gcloud
Pub/Sub emulator and to the Service Bus test endpoint, run by a ``cloudq -A proj worker`` on
that broker, read back with ``get_result``. A second ``TASKS`` alias names an App object."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cloudq import App
from tests.django.conftest import PROJECT
from tests.fixtures.pubsub_emulator import GCP_PROJECT
from tests.processes import LoggedProcess, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=["pubsub", "servicebus"])
def cloud(request: pytest.FixtureRequest, django_env: dict[str, str]) -> Iterator[tuple[str, App]]:
    """(alias, producer app) with a worker of the project on the same broker."""
    kind = request.param
    request.getfixturevalue(f"{kind}_env")  # the emulator, and its variables in os.environ
    prefix = f"dj{uuid.uuid4().hex[:10]}-"
    broker = (
        f"pubsub://{GCP_PROJECT}?prefix={prefix}"
        if kind == "pubsub"
        else f"servicebus://?prefix={prefix}"
    )
    producer = App(f"dj-{kind}", broker=broker, set_as_current=False)
    producer.conf.update(result_backend=django_env["SHOP_RESULT_BACKEND"])
    producer.ensure_queue("default")
    env = {**os.environ, **django_env, "SHOP_BROKER_URL": broker, "PYTHONPATH": str(PROJECT)}
    proc = LoggedProcess.worker("proj", ["-Q", "default", "-c", "2"], env, f"django-{kind}")
    try:
        proc.wait_ready()
        yield kind, producer
    finally:
        proc.kill()  # its tasks are done: no graceful stop to wait for (a 5 s long poll)
        producer.broker.close()


def test_enqueue_and_get_result_on_the_cloud(cloud: tuple[str, App]) -> None:
    from django.conf import settings
    from django.test import override_settings
    from shop.tasks import add, broken

    from cloudq.contrib.django.framework import TaskResultStatus

    alias, producer = cloud
    backend = {"BACKEND": "cloudq.contrib.django.tasks.CloudqBackend", "OPTIONS": {"app": producer}}
    with override_settings(TASKS={**settings.TASKS, alias: backend}):
        ok = add.using(backend=alias).enqueue(20, 22)
        bad = broken.using(backend=alias).enqueue("on " + alias)
        for result in (ok, bad):

            def done(result: Any = result) -> bool:
                result.refresh()
                return bool(result.is_finished)

            wait_for(done, 60, f"{result.task.name} on {alias}")
        assert (ok.status, ok.return_value) == (TaskResultStatus.SUCCESSFUL, 42)
        assert bad.status == TaskResultStatus.FAILED
        assert bad.errors[0].exception_class is ValueError
