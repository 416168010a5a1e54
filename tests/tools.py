"""Skip-or-fail for tests that need an external tool."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing_tool(reason: str) -> NoReturn:
    """Skip with ``reason``; under CI=true a missing tool fails the run instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and a required tool is missing: {reason}")
    pytest.skip(reason)
