"""Where Celery projects keep settings: a module (``celeryconfig``), an object, Django's
``settings``, and task modules found by package (``autodiscover_tasks``)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from cloudq.celery_settings import BY_NAME, BY_OLD_NAME, lookup, unknown
from cloudq.errors import ConfigurationError

OLD_PREFIXES = ("CELERY", "BROKER_")
"""Upper-case names with these prefixes are Celery's: an unknown one is a typo, not a constant."""


def load_config_object(path: str) -> Any:
    """``"celeryconfig"`` (a module) or ``"django.conf:settings"`` (an attribute of one)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"config_from_object: cannot import {module_name!r}: {exc}"
        ) from exc
    if not attr:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(
            f"config_from_object: module {module_name!r} has no attribute {attr!r}"
        ) from None


def _public_items(source: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Names with ``prefix`` only are read: reading each of Django's settings would warn for
    the deprecated ones (Django 6's ``EMAIL_*``)."""
    if isinstance(source, Mapping):
        return list(source.items())
    items = []
    for name in dir(source):
        if name.startswith("_") or not name.startswith(prefix):
            continue
        value = getattr(source, name)
        if inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value):
            continue  # imports and helpers of a config module, not settings
        items.append((name, value))
    return items


def settings_in(source: Any, namespace: str | None, cloudq_names: Iterable[str]) -> dict[str, Any]:
    """The settings an object holds, by the name ``conf.update`` takes.

    With a namespace, only ``<NAMESPACE>_*`` names are read (Django's other settings are not
    ours). Without one, lower-case names must all be settings (a typo fails with the closest
    names), and upper-case ones are Celery's old names; other upper-case constants are skipped.
    """
    names = set(cloudq_names)
    found: dict[str, Any] = {}
    for key, value in _public_items(source, f"{namespace}_" if namespace else ""):
        if namespace:
            if not key.startswith(f"{namespace}_"):
                continue
            setting = lookup(key, namespace)
            if setting is not None:
                found[key if key in BY_OLD_NAME else setting.name] = value
                continue
            own = key[len(namespace) + 1 :].lower()
            if own in names:
                found[own] = value
                continue
            raise unknown(key, names, namespace)
        if key in BY_NAME or key in names or key in BY_OLD_NAME:
            found[key] = value
        elif key.islower() or key.upper().startswith(OLD_PREFIXES):
            raise unknown(key, names)
    return found


def import_related(package: str, related_name: str) -> None:
    """Import ``package.related_name``; skip a package that has no such module."""
    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise ConfigurationError(f"autodiscover_tasks: cannot import {package!r}: {exc}") from exc
    module = f"{package}.{related_name}"
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
