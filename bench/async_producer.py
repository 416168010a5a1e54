"""Requests per second of a FastAPI endpoint that enqueues one task: ``adelay()`` vs ``delay()``.

    uv run python bench/async_producer.py            # 3 rounds of 10 s per endpoint
    uv run python bench/async_producer.py --quick    # 1 round of 2 s (a smoke run)

Starts a moto server (SQS over HTTP) and uvicorn serving ``examples/fastapi_app`` (one process),
both on free loopback ports, then drives the two endpoints in turn from an httpx client with
``--concurrency`` requests in flight: ``POST /add`` awaits ``add.adelay()``, ``POST
/add-blocking`` calls ``add.delay()`` inside ``async def`` (the loop stops for each send). Every
run is bounded in requests and in time. Prints requests per second, latency percentiles and
the ratio, medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.servers import answers, free_port, stop_process  # noqa: E402

ENDPOINTS = {"adelay()": "/add", "delay()": "/add-blocking"}
MAX_REQUESTS = 200_000
"""A run stops at its duration or at this many requests, whichever comes first."""


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        if answers(url):
            return
        time.sleep(0.05)
    sys.exit(f"{what} did not answer within {timeout:.0f} s")


async def _drive(base: str, path: str, concurrency: int, seconds: float) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        for _ in range(3):  # warm: queue created, connections open
            await client.post(path, json={"a": 1, "b": 2})
        began = time.monotonic()
        end = began + seconds

        async def one_user() -> None:
            nonlocal errors
            while time.monotonic() < end and len(latencies) + errors < MAX_REQUESTS:
                start = time.monotonic()
                reply = await client.post(path, json={"a": 1, "b": 2})
                if reply.status_code == 202:
                    latencies.append(time.monotonic() - start)
                else:
                    errors += 1

        await asyncio.gather(*(one_user() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3

    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": float(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s per endpoint")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.concurrency = 2.0, 1, 16
    workdir = Path(tempfile.mkdtemp(prefix="cloudq-async-bench-"))
    moto_port, api_port = free_port(), free_port()
    moto_url, api_url = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{api_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDQ_", "AWS_"))}
    env.update(
        AWS_ENDPOINT_URL=moto_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=str(workdir / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "none"),
        CLOUDQ_BROKER_URL=f"sqs://?prefix=bench-{uuid.uuid4().hex[:8]}-",
        PYTHONPATH=str(ROOT),
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (workdir / "moto.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_http(moto_url + "/moto-api/", procs[0], "moto server")
        with (workdir / "uvicorn.log").open("wb") as log:
            command = [sys.executable, "-m", "uvicorn", "examples.fastapi_app.main:api"]
            command += ["--host", "127.0.0.1", "--port", str(api_port), "--no-access-log"]
            procs.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        _wait_http(api_url + "/health", procs[1], "uvicorn")
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in ENDPOINTS}
        for _ in range(args.rounds):
            for label, path in ENDPOINTS.items():  # interleaved: drift hits both alike
                runs[label].append(
                    asyncio.run(_drive(api_url, path, args.concurrency, args.seconds))
                )
        _report(runs, args)
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def _report(runs: dict[str, list[dict[str, float]]], args: Any) -> None:
    print(
        f"FastAPI endpoint enqueueing one task on SQS (moto), {args.concurrency} requests in "
        f"flight, {args.rounds} x {args.seconds:.0f} s, medians"
    )
    print(f"{'endpoint':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    med: dict[str, dict[str, float]] = {}
    for label, samples in runs.items():
        med[label] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        m = med[label]
        print(
            f"{label:<10} {m['rps']:>9.0f} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f} "
            f"{m['errors']:>7.0f}"
        )
    a, d = med["adelay()"], med["delay()"]
    print(f"ratio adelay()/delay(): {a['rps'] / d['rps']:.2f}x requests per second")
    print(f"ratio delay()/adelay() p99 latency: {d['p99_ms'] / a['p99_ms']:.2f}x")


if __name__ == "__main__":
    main()
