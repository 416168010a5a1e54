"""The ``example`` fixture: one of Celery's documented examples, importable by its own names."""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"


@pytest.fixture
def example() -> Iterator[Callable[[str], Path]]:
    """``example("first_steps")`` puts that directory first on ``sys.path``; every module
    imported from it is forgotten afterwards, so ``tasks`` or ``proj`` of one example never
    leaks into another. A module of the same name imported before (another suite's ``proj``,
    the real ``django`` where an example brings its stand-in) is set aside meanwhile and put
    back after, and so is the environment (Django's example sets ``DJANGO_SETTINGS_MODULE``,
    which a Celery worker started later by another test would follow)."""
    added: list[str] = []
    shadowed: dict[str, types.ModuleType] = {}

    def use(name: str) -> Path:
        path = EXAMPLES / name
        for top in _top_level_names(path):
            for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                shadowed[loaded] = sys.modules.pop(loaded)
        sys.path.insert(0, str(path))
        added.append(str(path))
        importlib.invalidate_caches()
        return path

    before = set(sys.modules)
    environment = dict(os.environ)
    yield use
    os.environ.clear()
    os.environ.update(environment)
    for path in added:
        sys.path.remove(path)
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) or ""
        if any(origin.startswith(path) for path in added):
            del sys.modules[name]
    sys.modules.update(shadowed)


def _top_level_names(path: Path) -> list[str]:
    """The modules and packages an example directory provides."""
    names = [p.stem for p in path.glob("*.py")]
    names += [p.name for p in path.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    return names
