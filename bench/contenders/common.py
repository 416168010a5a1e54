"""The shared task body and the environment every contender reads."""

from __future__ import annotations

import os
import time

_fd: list[int] = []


def record(t0: float) -> None:
    """The no-op task: one ``os.write`` of the enqueue → start latency to ``$BENCH_OUT``."""
    if not _fd:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        _fd.append(os.open(os.environ["BENCH_OUT"], flags, 0o644))
    os.write(_fd[0], f"{time.time() - t0:.6f}\n".encode())


def queue() -> str:
    return os.environ.get("BENCH_QUEUE", "bench")


def region() -> str:
    return os.environ.get("AWS_REGION", "us-east-1")
