"""One test's share of a provider for the worker tests of every provider: the test process is
the producer and the observer, ``cloudq worker`` subprocesses (and servers) the consumers, all
on the same queue prefix and result store, so tests never see each other's messages."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from cloudq import App
from tests.processes import CLOUDQ, ROOT, LoggedProcess


def new_prefix() -> str:
    """A queue prefix of one test's own."""
    return f"w{uuid.uuid4().hex[:10]}-"


class Stack:
    """One test's broker prefix, result store and marker directory (``tmp``); makes producers
    and the subprocesses that share them, and stops every one of them in ``close``."""

    def __init__(
        self,
        tmp: Path,
        broker_url: str,
        backend_url: str,
        prefix: str,
        make_app: Callable[..., App],
        app_ref: str,
        keep: tuple[str, ...] = (),
    ) -> None:
        """``keep``: the ``CLOUDQ_*`` variable prefixes that reach the subprocesses (an
        adapter's own connection settings); every other ``CLOUDQ_*`` variable is dropped."""
        self.tmp = tmp
        self.broker_url = broker_url
        self.backend_url = backend_url
        self.prefix = prefix
        self.make_app = make_app
        self.app_ref = app_ref
        self.keep = keep
        self.processes: list[LoggedProcess] = []
        self.graceful: set[LoggedProcess] = set()
        self.apps: list[App] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def settings(self, **settings: Any) -> dict[str, Any]:
        return {
            "broker_url": self.broker_url,
            "result_backend": self.backend_url,
            "worker_poll_seconds": 1,
            **settings,
        }

    def producer(self, **settings: Any) -> App:
        """An App in the test process with the same tasks, broker and backend as the workers."""
        app = self.make_app(**self.settings(**settings))
        self.apps.append(app)
        return app

    def env(self, **settings: Any) -> dict[str, str]:
        """A subprocess's environment: the settings as ``CLOUDQ_*`` (JSON unless a string), so
        the test's own ``CLOUDQ_*`` variables cannot leak into it."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CLOUDQ_") or k.startswith(self.keep)
        }
        env["PYTHONPATH"] = str(ROOT)
        for key, value in self.settings(**settings).items():
            env[f"CLOUDQ_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        return env

    def spawn(
        self, command: Sequence[str], env: dict[str, str], name: str, graceful: bool = False
    ) -> LoggedProcess:
        """A subprocess stopped by ``close``; ``graceful`` ones get SIGTERM (a server that must
        stop its own children), the others SIGKILL."""
        proc = LoggedProcess(command, env, name)
        self.processes.append(proc)
        if graceful:
            self.graceful.add(proc)
        return proc

    def worker(
        self,
        queues: Sequence[str],
        concurrency: int = 1,
        prefetch: int | None = None,
        env: dict[str, str] | None = None,
        **settings: Any,
    ) -> LoggedProcess:
        """``cloudq -A <app_ref> worker`` on ``queues``, in ``env`` or ``self.env(**settings)``."""
        args = ["-Q", ",".join(queues), "-c", str(concurrency), "-l", "info"]
        if prefetch is not None:
            args += ["--prefetch", str(prefetch)]
        command = [*CLOUDQ, "-A", self.app_ref, "worker", *args]
        name = f"worker-{len(self.processes) + 1}"
        return self.spawn(command, env or self.env(**settings), name)

    def logs(self) -> str:
        return "\n".join(p.log() for p in self.processes)

    def close(self) -> None:
        processes, self.processes = self.processes, []
        graceful, self.graceful = self.graceful, set()
        apps, self.apps = self.apps, []
        try:
            for p in processes:  # every one first: a slow wait below must not spare the others
                if p.alive():
                    if p in graceful:
                        p.proc.terminate()
                    else:
                        p.proc.kill()
            for p in processes:
                if p in graceful:
                    p.stop()
                else:
                    p.kill()
        finally:
            for app in apps:
                app.close()
