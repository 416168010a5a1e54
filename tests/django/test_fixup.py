"""The Django fixup: what ``config_from_object("django.conf:settings", ...)`` gives an app, and
the processes pool (``django.setup()`` in each child) on moto SQS."""

from __future__ import annotations

import os
from typing import Any

import pytest

from cloudq import App
from tests.django.conftest import PROJECT
from tests.processes import LoggedProcess, wait_for


def test_configured_from_django_settings_gets_the_fixup(django_env: dict[str, str]) -> None:
    from cloudq.contrib.django.hygiene import DjangoConnections

    ported = App("ported", set_as_current=False)
    ported.config_from_object("django.conf:settings", namespace="CELERY")  # a ported project
    assert sum(isinstance(m, DjangoConnections) for m in ported.hooks.middleware) == 1
    ported.config_from_object("django.conf:settings", namespace="CELERY")
    assert sum(isinstance(m, DjangoConnections) for m in ported.hooks.middleware) == 1
    assert ported.discover_default is not None
    assert list(ported.discover_default()) == ["django.contrib.contenttypes", "shop"]

    plain = App("plain", set_as_current=False)
    plain.config_from_object({"task_default_queue": "q"})
    assert not any(isinstance(m, DjangoConnections) for m in plain.hooks.middleware)


def test_autodiscover_reads_the_app_registry(django_env: dict[str, str]) -> None:
    """``INSTALLED_APPS`` names ``shop.apps.ShopConfig``: importing ``<entry>.tasks`` fails;
    the registry's ``shop`` is what has a ``tasks`` module."""
    app = App("discover", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CLOUDQ")
    app.autodiscover_tasks()
    app.finalize()
    assert "shop.tasks.mark_paid" in app.tasks
    assert "shop.tasks.add" not in app.tasks, "Django tasks belong to the TASKS backend's app"


@pytest.mark.integration
def test_processes_pool_children_set_django_up(
    project_app: Any, django_env: dict[str, str]
) -> None:
    from shop.models import Order
    from shop.tasks import mark_paid

    env = {**os.environ, **django_env, "PYTHONPATH": str(PROJECT)}
    proc = LoggedProcess.worker("proj", ["-Q", "procs", "-P", "processes", "-c", "1"], env, "procs")
    try:
        proc.wait_ready()
        order = Order.objects.create(item="chair")
        result = mark_paid.apply_async((order.pk,), queue="procs")
        assert result.get(timeout=30) == "chair"
        wait_for(lambda: Order.objects.get(pk=order.pk).paid, 10, "the row paid", proc.log)
        assert Order.objects.get(pk=order.pk).paid_by != f"pid {proc.pid}", "ran in a child"
    finally:
        proc.kill()  # its task is done: no graceful stop to wait for


def test_dash_a_finds_the_renamed_celery_module(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-A proj`` finds ``proj/cloudq.py`` as Celery's finds ``proj/celery.py``, also when
    ``proj/__init__.py`` does not import it."""
    from cloudq.pool import load_app

    package = tmp_path / "renamed_proj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = "from cloudq import App\n\napp = App('renamed', set_as_current=False)\n"
    (package / "cloudq.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_app("renamed_proj").main == "renamed"
