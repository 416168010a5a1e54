"""A documented example "ported" as a user ports it: copied, with only its broker and result
backend URLs changed, then served by a real ``cloudq worker`` subprocess.

The examples under ``examples/`` name ``memory://`` URLs (the one change from Celery's text);
``port`` rewrites the broker's to the test's SQS prefix and the backend's to its Redis
database, exactly the edit a user makes to move from their laptop to SQS.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.compat.conftest import EXAMPLES
from tests.compat.isolation import importable
from tests.processes import CLOUDQ, ROOT, LoggedProcess

_BROKER = re.compile(r"""((?:broker|broker_url)\s*=\s*)(["'])memory://[^"']*\2""")
_BACKEND = re.compile(r"""((?:backend|result_backend)\s*=\s*)(["'])memory://[^"']*\2""")


def port(name: str, dest: Path, broker: str, backend: str) -> Path:
    """Copy example ``name`` to ``dest`` with its URLs rewritten; fail if an example has none
    (then it would silently keep running on memory)."""
    target = dest / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    changed = 0
    for path in target.rglob("*.py"):
        text = path.read_text()
        text, brokers = _BROKER.subn(lambda m: f"{m[1]}{m[2]}{broker}{m[2]}", text)
        text, backends = _BACKEND.subn(lambda m: f"{m[1]}{m[2]}{backend}{m[2]}", text)
        if brokers or backends:
            path.write_text(text)
            changed += brokers + backends
    assert changed >= 2, f"example {name} names no memory:// broker and backend to port"
    return target


def worker_env(path: Path) -> dict[str, str]:
    """The environment a user's shell has: moto's AWS variables (set by ``sqs_env``), the
    example first on the path, and none of the test run's ``CLOUDQ_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")}
    env["PYTHONPATH"] = os.pathsep.join([str(path), str(ROOT)])
    return env


@contextmanager
def served(path: Path, app_ref: str, *worker_args: str) -> Iterator[LoggedProcess]:
    """``cloudq -A app_ref worker`` on the ported example, stopped afterwards."""
    command = [*CLOUDQ, "-A", app_ref, "worker", "-c", "2", "-l", "info", *worker_args]
    worker = LoggedProcess(command, worker_env(path), f"worker-{app_ref}")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@contextmanager
def imported(path: Path) -> Iterator[None]:
    """The ported example importable in this process by its own names, forgotten afterwards."""
    with importable(path):
        yield
