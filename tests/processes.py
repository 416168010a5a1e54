"""Real subprocesses for the tests (workers, function servers): their stderr read by a thread,
waits on log lines that fail at once if the process dies, and clean stops. One harness for every
provider's tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("cloudq")
CLOUDQ = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cloudq.cli"]
STARTUP_TIMEOUT = 30.0

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout: float, what: str, logs: Callable[[], str] = str
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs()[-20000:]}")
        time.sleep(0.05)


def events(marker: Path, kind: str) -> list[tuple[int, float, str]]:
    """(pid, time, extra) of each ``kind`` line a task appended to ``marker``."""
    if not marker.exists():
        return []
    found = []
    for line in marker.read_text().splitlines():
        fields = line.split(" ")
        if fields[0] == kind:
            found.append((int(fields[1]), float(fields[2]), " ".join(fields[3:])))
    return found


class LoggedProcess:
    """A subprocess whose stderr is read into ``lines`` by a thread."""

    def __init__(self, command: Sequence[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stderr", daemon=True)
        self._reader.start()

    @classmethod
    def worker(
        cls, app_ref: str, args: Sequence[str], env: dict[str, str], name: str
    ) -> LoggedProcess:
        """``cloudq -A app_ref worker *args``."""
        return cls([*CLOUDQ, "-A", app_ref, "worker", *args], env, name)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return f"--- {self.name} (pid {self.pid}) ---\n" + "".join(list(self.lines))

    def find(self, pattern: str, start: int = 0) -> list[re.Match[str]]:
        """Matches of ``pattern`` in log lines ``start`` onwards."""
        found = (re.search(pattern, line) for line in list(self.lines)[start:])
        return [m for m in found if m]

    def wait_log(
        self, pattern: str, timeout: float, count: int = 1, start: int = 0
    ) -> re.Match[str]:
        """Wait for ``count`` lines (from line ``start``) to match; fail at once if it exits."""

        def probe() -> re.Match[str] | None:
            matches = self.find(pattern, start)
            if len(matches) >= count:
                return matches[count - 1]
            if self.proc.poll() is not None:
                self._reader.join(5)
                matches = self.find(pattern, start)
                if len(matches) >= count:
                    return matches[count - 1]
                pytest.fail(
                    f"{self.name} exited with {self.proc.returncode} before logging "
                    f"{pattern!r}\n{self.log()}"
                )
            return None

        return wait_for(probe, timeout, f"{pattern!r} x{count} in the log of {self.name}", self.log)

    def wait_ready(self) -> None:
        self.wait_log(r"worker \S+ ready: ", STARTUP_TIMEOUT)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout}s\n{self.log()}")
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """SIGKILL by pid (workers: their messages come back after the lease)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL if it lingers (servers that must stop their own children)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
