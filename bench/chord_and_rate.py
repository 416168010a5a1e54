"""Chord of 1,000 header tasks and the observed rate under a limit, with real Redis.

    uv run python bench/chord_and_rate.py

Starts its own redis-server on a free loopback port. The chord runs on the memory broker with a
4-thread worker (the broker is not what is measured here): wall time from send to the body's
result, and every Redis command the result backend issued, by name.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudq import App, chord
from cloudq.testing import start_worker, wait_for
from tests.fixtures.servers import free_port


def main() -> None:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        import redis

        wait_for(lambda: _pings(redis, port), timeout=10, message="redis up")
        chord_run(port)
        rate_run(port)
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(redis: object, port: int) -> bool:
    try:
        return bool(redis.Redis(port=port).ping())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not up yet
        return False


def chord_run(port: int) -> None:
    name = uuid.uuid4().hex
    app = App("bench", broker=f"memory://{name}", backend=f"redis://127.0.0.1:{port}/0")

    @app.task(name="inc")
    def inc(x: int) -> int:
        return x + 1

    @app.task(name="total")
    def total(values: list[int]) -> int:
        return sum(values)

    backend = app.backend
    counts: collections.Counter[str] = collections.Counter()
    client = backend._client  # type: ignore[union-attr]
    original = client.execute_command

    def counting(*args: object, **kwargs: object) -> object:
        counts[str(args[0]).split()[0]] += 1
        return original(*args, **kwargs)

    client.execute_command = counting
    make_pipeline = client.pipeline

    def counting_pipeline(*args: object, **kwargs: object) -> object:
        counts["pipeline (SET/PUBLISH or chord start)"] += 1
        return make_pipeline(*args, **kwargs)

    client.pipeline = counting_pipeline
    with start_worker(app, ["default"], concurrency=4, poll_seconds=0.05):
        started = time.perf_counter()
        result = chord(inc.s(i) for i in range(1000))(total.s())
        value = result.get(timeout=120)
        elapsed = time.perf_counter() - started
    assert value == sum(range(1, 1001))
    print(
        f"chord of 1,000 header tasks: {elapsed:.2f} s from send to the body's result; "
        f"Redis round trips: {sum(counts.values())} ({dict(counts)})"
    )


def rate_run(port: int) -> None:
    name = uuid.uuid4().hex
    starts: list[float] = []
    lock = threading.Lock()
    apps = []
    for _ in range(3):
        app = App("bench", broker=f"memory://{name}", backend=f"redis://127.0.0.1:{port}/0")

        @app.task(name="limited", rate_limit="20/s", ignore_result=True)
        def limited(i: int) -> None:
            with lock:
                starts.append(time.monotonic())

        apps.append(app)
    for i in range(200):
        apps[0].tasks["limited"].delay(i)
    workers = [start_worker(a, ["default"], concurrency=4, poll_seconds=0.05) for a in apps]
    for w in workers:
        w.__enter__()
    try:
        wait_for(lambda: len(starts) >= 200, timeout=60, message="200 tasks")
    finally:
        for w in workers:
            w.__exit__(None, None, None)
    starts.sort()
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    print(
        f"rate limit 20/s, 3 workers, 200 tasks: observed {rate:.2f}/s "
        f"({(rate / 20 - 1) * 100:+.1f} %), {len(starts)} ran, 0 lost"
    )


if __name__ == "__main__":
    main()
