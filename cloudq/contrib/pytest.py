"""``celery.contrib.pytest``'s place: ``pytest_plugins = ("cloudq.contrib.pytest",)``.

The plugin lives in ``cloudq.testing.pytest_plugin``; this module re-exports it so a ported
conftest.py changes only its import.
"""

from cloudq.testing.pytest_plugin import *  # noqa: F403
from cloudq.testing.pytest_plugin import pytest_configure  # noqa: F401
