"""One example's modules importable by their own names, and nothing of it left behind.

Examples reuse names (``tasks``, ``proj``) that other suites import too (the Django project's
``proj``, the real ``django`` where an example brings its stand-in): those are set aside while
the example runs and put back after, and the example's own modules are forgotten. The
environment is restored too (Django's example sets ``DJANGO_SETTINGS_MODULE``, which a Celery
worker started later by another test would follow).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def importable(*paths: Path) -> Iterator[None]:
    """``paths`` first on ``sys.path`` for the block; see the module's docstring."""
    shadowed: dict[str, types.ModuleType] = {}
    for path in paths:
        for top in top_level_names(path):
            for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                shadowed[loaded] = sys.modules.pop(loaded)
        sys.path.insert(0, str(path))
    importlib.invalidate_caches()
    before = set(sys.modules)
    environment = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environment)
        for path in paths:
            sys.path.remove(str(path))
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules.get(name), "__file__", None) or ""
            if any(origin.startswith(str(path)) for path in paths):
                del sys.modules[name]
        sys.modules.update(shadowed)


def top_level_names(path: Path) -> list[str]:
    """The modules and packages a directory provides."""
    names = [p.stem for p in path.glob("*.py")]
    names += [p.name for p in path.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    return names
