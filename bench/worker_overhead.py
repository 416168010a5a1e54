"""The worker's own CPU per task, without a network: ``uv run python bench/worker_overhead.py``.

N no-op tasks on the memory broker, one worker in this process; prints CPU microseconds per
task (``resource.getrusage``, all threads), the median of ``--runs`` runs with their range. What
is left of the broker benches once the SDK's cost is taken out: the hand-off to pool threads,
decoding, running and settling, logging. ``--inline`` runs the same tasks with no pool (receive,
execute, settle and the batched ack in one thread): the difference between the two is what
waking pool threads costs. On a machine with several cores that cost moves from run to run
with where the threads land; ``taskset -c 0`` in front takes it out.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import threading
import time
import uuid
from typing import Any

from cloudq import App, signals
from cloudq.execute import execute
from cloudq.middleware import Middleware
from cloudq.settle import settle
from cloudq.worker import Worker, _Acker


def _receiver(sender: Any = None, **kw: Any) -> None:
    """A Celery signal receiver doing nothing."""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Noop(Middleware):
    """A middleware on every task hook, doing nothing: the bus's own cost."""

    def received(self, app: App, **kw: Any) -> None: ...
    def before_execute(self, app: App, **kw: Any) -> None: ...
    def after_execute(self, app: App, **kw: Any) -> None: ...


def _app(n: int, hooks: str = "none") -> App:
    """A fresh broker with ``n`` no-op tasks queued; ``hooks``: none, a no-op ``middleware``,
    or a receiver on Celery's ``signals`` (task_prerun and task_postrun), or ``prometheus``."""
    middleware: list[Middleware] = [_Noop()] if hooks == "middleware" else []
    if hooks == "prometheus":  # the real exporter's recording, without its HTTP server
        from cloudq.contrib.prometheus import PrometheusMetrics

        middleware = [PrometheusMetrics()]
    app = App("overhead", broker=f"memory://{uuid.uuid4().hex}", middleware=middleware)

    @app.task(name="work", queue="q", ignore_result=True)
    def work(t0: float) -> None:
        """A no-op: all that is measured is the library."""

    app.ensure_queue("q")
    app.send_envelopes([work.envelope((0.0,), {}) for _ in range(n)])
    return app


def _pool_run(app: App, n: int, concurrency: int) -> tuple[float, float]:
    worker = Worker(app, ["q"], concurrency=concurrency)
    cpu0, wall0 = _cpu(), time.perf_counter()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    while worker.processed < n:
        time.sleep(0.01)
    cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    worker.stop()
    thread.join(10)
    return cpu, wall


def _inline_run(app: App, n: int) -> tuple[float, float]:
    """In a thread of its own, not the main one: time limits then take the pool's path."""
    acker = _Acker(app, app.conf.queue_lease_seconds)

    def loop() -> None:
        done = 0
        while done < n:
            deliveries = app.broker.receive("q", 10, 0, app.conf.queue_lease_seconds)
            for delivery in deliveries:
                settle(app, delivery, execute(delivery, app), ack=acker)
            acker.flush()
            done += len(deliveries)

    cpu0, wall0 = _cpu(), time.perf_counter()
    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    return _cpu() - cpu0, time.perf_counter() - wall0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="tasks per run (default 20000)")
    parser.add_argument("-c", "--concurrency", type=int, default=4, help="pool threads")
    parser.add_argument("--runs", type=int, default=3, help="runs; the median is shown (3)")
    parser.add_argument("--inline", action="store_true", help="no pool: one thread does all")
    parser.add_argument("--loglevel", default="INFO", help="as `cloudq worker -l` (INFO)")
    parser.add_argument(
        "--hooks",
        choices=["none", "middleware", "signals", "prometheus"],
        default="none",
        help="a no-op middleware on the task hooks, receivers on task_prerun/postrun, or the "
        "Prometheus middleware (cloudq.contrib.prometheus)",
    )
    args = parser.parse_args()
    if args.hooks == "signals":
        signals.task_prerun.connect(_receiver)
        signals.task_postrun.connect(_receiver)
    if args.n < 1 or args.runs < 1:
        parser.error("--n and --runs must be at least 1")
    per_task, rates = [], []
    with open(os.devnull, "w") as sink:
        logging.basicConfig(level=args.loglevel.upper(), stream=sink)
        for _ in range(args.runs):
            app = _app(args.n, args.hooks)
            if args.inline:
                cpu, wall = _inline_run(app, args.n)
            else:
                cpu, wall = _pool_run(app, args.n, args.concurrency)
            per_task.append(cpu / args.n * 1e6)
            rates.append(args.n / wall)
    how = "inline" if args.inline else f"-c {args.concurrency}"
    how += f", hooks {args.hooks}"
    print(
        f"{args.n} tasks, {how}, {args.runs} run(s): {statistics.median(per_task):.1f} us CPU "
        f"per task (median; {min(per_task):.1f}-{max(per_task):.1f}), "
        f"{statistics.median(rates):,.0f} tasks/s"
    )


if __name__ == "__main__":
    main()
