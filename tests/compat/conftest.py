"""The ``example`` fixture: one of Celery's documented examples, importable by its own names."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"


@pytest.fixture
def example() -> Iterator[Callable[[str], Path]]:
    """``example("first_steps")`` puts that directory first on ``sys.path``; every module
    imported from it is forgotten afterwards, so ``tasks`` or ``proj`` of one example never
    leaks into another."""
    added: list[str] = []

    def use(name: str) -> Path:
        path = EXAMPLES / name
        sys.path.insert(0, str(path))
        added.append(str(path))
        importlib.invalidate_caches()
        return path

    before = set(sys.modules)
    yield use
    for path in added:
        sys.path.remove(path)
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) or ""
        if any(origin.startswith(path) for path in added):
            del sys.modules[name]
