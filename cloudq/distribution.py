"""The names cloudq is published under on the package index, and the install hint built on them.

The import package is ``cloudq``, but ``cloudq`` on the index is an unrelated project (a
cloud-storage scheduler that also installs a top-level ``cloudq``), so the distributions carry
names of their own. Every ``pip install ...`` the library prints is built here, so a rename is
one edit.
"""

from __future__ import annotations

import importlib
from typing import Any

DISTRIBUTION = "cloudqueue-tasks"
"""The core: ``pip install cloudqueue-tasks`` gives ``import cloudq`` and the ``cloudq`` command."""

ADAPTER_DISTRIBUTIONS = {
    "sqs": "cloudqueue-tasks-sqs",
    "pubsub": "cloudqueue-tasks-pubsub",
    "servicebus": "cloudqueue-tasks-servicebus",
}
"""The core's extra -> the adapter distribution it installs (each imports as ``cloudq_<extra>``)."""

IMPORT_PACKAGES = {
    DISTRIBUTION: "cloudq",
    **{dist: f"cloudq_{extra}" for extra, dist in ADAPTER_DISTRIBUTIONS.items()},
}
"""Distribution -> its import package (the names differ; an editable install records neither)."""


def install_hint(extra: str | None = None, distribution: str = DISTRIBUTION) -> str:
    """What to run to get ``extra``: ``pip install 'cloudqueue-tasks[sqs]'``."""
    return f"pip install '{distribution}[{extra}]'" if extra else f"pip install {distribution}"


def require_extra(module: str, extra: str, feature: str) -> Any:
    """Import ``module`` for ``feature``; without it, an ImportError that names the extra to
    install (``cloudq.contrib`` integrations are imported only when used)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{feature} need the {extra!r} extra ({exc}): {install_hint(extra)}"
        ) from exc
