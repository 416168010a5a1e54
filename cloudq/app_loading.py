"""Finding an App by its import path (``-A proj``), and an App's import path back.

Celery's ``-A`` rules; the processes pool's children import the app by the path found here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING

from cloudq.errors import ConfigurationError

if TYPE_CHECKING:
    from cloudq.app import App

__all__ = ["find_app_ref", "load_app"]


def load_app(ref: str) -> App:
    """``module``, ``module:attribute`` or ``module.attribute`` to the App, found as Celery's
    ``-A`` finds it: a module's ``app``, then its ``celery``, then (a package) its ``celery``
    or ``cloudq`` submodule, then the one App it holds."""
    app = _find_app(ref)
    app.finalize()  # include= and autodiscovered task modules, before the first task runs
    return app


def _import(module_name: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import app module {module_name!r}: {exc}") from exc


def _find_app(ref: str) -> App:
    from cloudq.app import App

    module_name, colon, attr = ref.partition(":")
    if colon:
        found = getattr(_import(module_name), attr, None)
        if isinstance(found, App):
            return found
        raise ConfigurationError(f"{attr!r} in module {module_name!r} is not a cloudq App")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        parent, _, name = module_name.rpartition(".")
        if not parent or exc.name != module_name:  # a.b.app: module a.b, attribute app
            raise ConfigurationError(f"cannot import app module {module_name!r}: {exc}") from exc
        return _find_app(f"{parent}:{name}")
    except ImportError as exc:
        raise ConfigurationError(f"cannot import app module {module_name!r}: {exc}") from exc
    for name in ("app", "celery"):
        found = getattr(module, name, None)
        if isinstance(found, App):
            return found
    if hasattr(module, "__path__"):  # a package: proj -> proj.celery (Celery's layout), or
        for sub in ("celery", "cloudq"):  # proj.cloudq, the same file renamed
            try:
                return _find_app(f"{module_name}.{sub}")
            except ConfigurationError:
                if importlib.util.find_spec(f"{module_name}.{sub}") is not None:
                    raise
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) == 1:
        return apps[0]
    raise ConfigurationError(
        f"no cloudq App found in {ref!r}: name it 'app' or pass -A {module_name}:attribute"
    )


def find_app_ref(app: App) -> str:
    """The import path of an App object already loaded in this process."""
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if value is app:
                return f"{name}:{attr}"
    raise ConfigurationError(
        "the processes pool imports the app in each child: define the App at module level "
        "in an importable module, or pass app_ref='module:attribute'"
    )
