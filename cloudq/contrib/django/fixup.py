"""Celery's Django fixup, ported: what an app configured from Django's settings gets.

Installed by ``app.config_from_object("django.conf:settings", ...)`` (or ``install(app)``):

- ``autodiscover_tasks()`` without packages imports ``tasks`` of every app in Django's app
  registry (``AppConfig.name``: ``INSTALLED_APPS`` may hold ``shop.apps.ShopConfig``), lazily,
  when the app is finalized, so ``proj/cloudq.py`` can be imported before ``django.setup()``;
- the ``DjangoConnections`` middleware on the hook bus (``cloudq.contrib.django.hygiene``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloudq.app import App


def setup_django() -> None:
    """``django.setup()`` once per process (a no-op once the app registry is ready)."""
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()


def installed_packages() -> Iterable[str]:
    """The packages of Django's installed apps, with the registry set up first."""
    from django.apps import apps

    setup_django()
    return [config.name for config in apps.get_app_configs()]


def install(app: App) -> None:
    """Give ``app`` Django's task discovery and connection hygiene (idempotent)."""
    from cloudq.contrib.django.hygiene import DjangoConnections

    app.discover_default = installed_packages
    if not any(isinstance(m, DjangoConnections) for m in app.hooks.middleware):
        app.add_middleware(DjangoConnections())
