"""The ``example`` fixture: one of Celery's documented examples, importable by its own names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.compat.isolation import importable

EXAMPLES = Path(__file__).parent / "examples"


@pytest.fixture
def example() -> Iterator[Callable[[str], Path]]:
    """``example("first_steps")`` makes that directory importable by its own names for the
    test (``tests.compat.isolation.importable``: nothing of it is left behind)."""
    with ExitStack() as stack:

        def use(name: str) -> Path:
            path = EXAMPLES / name
            stack.enter_context(importable(path))
            return path

        yield use
