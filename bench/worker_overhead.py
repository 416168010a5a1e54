"""The worker's own CPU per task, without a network: ``uv run python bench/worker_overhead.py``.

N no-op tasks on the memory broker, one worker in this process; prints CPU microseconds per
task (``resource.getrusage``, all threads). What is left of the broker benches once the SDK's
cost is taken out: the hand-off to pool threads, decoding, running and settling, logging.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import threading
import time

from cloudq import App
from cloudq.worker import Worker


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="tasks (default 20000)")
    parser.add_argument("-c", "--concurrency", type=int, default=4, help="pool threads")
    parser.add_argument("--loglevel", default="INFO", help="as `cloudq worker -l` (INFO)")
    args = parser.parse_args()
    with open(os.devnull, "w") as sink:
        logging.basicConfig(level=args.loglevel.upper(), stream=sink)
        app = App("overhead", broker="memory://")

        @app.task(name="work", queue="q", ignore_result=True)
        def work(t0: float) -> None:
            """A no-op: all that is measured is the library."""

        app.ensure_queue("q")
        app.send_envelopes([work.envelope((0.0,), {}) for _ in range(args.n)])
        worker = Worker(app, ["q"], concurrency=args.concurrency)
        cpu0, wall0 = _cpu(), time.perf_counter()
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        while worker.processed < args.n:
            time.sleep(0.01)
        cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
        worker.stop()
        thread.join(10)
    print(
        f"{args.n} tasks, -c {args.concurrency}: {cpu / args.n * 1e6:.1f} us CPU per task, "
        f"{args.n / wall:,.0f} tasks/s"
    )


if __name__ == "__main__":
    main()
