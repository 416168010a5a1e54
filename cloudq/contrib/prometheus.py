"""Prometheus metrics for a worker: a middleware on the hook bus, served on ``/metrics``.

``cloudq worker --metrics-port 9808`` adds ``PrometheusMetrics(port=9808)``; in code,
``app.add_middleware(PrometheusMetrics(port=9808))`` does the same for the workers of that app.
Task metrics (``cloudq.contrib.task_metrics`` names them) are recorded where the task runs;
in-flight and pool size are read off the worker at scrape time; receive and ack calls are
counted by wrapping the broker's two methods while the worker runs (the worker's loop has no
hook per broker call, and a hook there would cost every worker a call per receive).

Processes pool: prometheus_client's multiprocess mode. At ``worker_start``, before the children
are spawned, the worker gets a temporary directory in ``PROMETHEUS_MULTIPROC_DIR`` (unless the
environment already names one), the children inherit it and add this middleware themselves
(``cloudq.middleware.pass_to_pool_children``), each process writes its samples there, and the
parent's ``/metrics`` sums them. The directory is removed at ``worker_stop``.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cloudq.contrib import task_metrics as tm
from cloudq.distribution import require_extra
from cloudq.logsafe import get_logger
from cloudq.middleware import Middleware, pass_to_pool_children

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from cloudq.app import App

logger = get_logger("cloudq.contrib.prometheus")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_ADDRESS = "127.0.0.1"
"""Loopback unless told otherwise: the metrics name tasks and queues."""


def require_client() -> Any:
    return require_extra("prometheus_client", "prometheus", "Prometheus metrics")


class _WorkerCollector:
    """In-flight tasks and pool size, read off the live worker when scraped."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            f"{tm.NAMESPACE}_{tm.IN_FLIGHT}",
            "tasks running now",
            value=len(self.worker.active_tasks()),
        )
        yield GaugeMetricFamily(
            f"{tm.NAMESPACE}_{tm.POOL_SIZE}",
            "pool slots (threads or processes)",
            value=self.worker.concurrency,
        )


class _Series:
    """One (task, queue)'s labelled metrics."""

    def __init__(self, tasks: Any, duration: Any, latency: Any, key: tuple[str, str]) -> None:
        self._tasks = tasks
        self._key = key
        self._outcomes: dict[str, Any] = {}
        self.duration = duration
        self.latency = latency

    def count(self, outcome: str) -> None:
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = self._tasks.labels(*self._key, outcome)
        child.inc()


class PrometheusMetrics(Middleware):
    """Records task metrics; with ``port``, a worker serves them on ``address:port/metrics``."""

    def __init__(self, port: int | None = None, address: str = DEFAULT_ADDRESS) -> None:
        self.port = port
        self.address = address
        self._metrics: dict[str, Any] | None = None
        self._runs = tm.Runs()
        self._queues = tm.QueueLabels()
        self._server: Any = None
        self._own_dir: str | None = None
        self._unwrap: list[Callable[[], None]] = []
        self._children: dict[tuple[str, str], _Series] = {}
        self.registry: CollectorRegistry | None = None
        """What ``/metrics`` serves (set at ``worker_start``)."""

    # --- the metrics ------------------------------------------------------------------------
    def _ensure(self) -> dict[str, Any]:
        """The metric objects, made on first use in this process: in multiprocess mode they are
        registered nowhere (their samples go to files the serving process reads)."""
        if self._metrics is not None:
            return self._metrics
        pc = require_client()
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # env changed
        multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = None if multiprocess else pc.CollectorRegistry()
        kw: dict[str, Any] = {"namespace": tm.NAMESPACE, "registry": self.registry}
        self._metrics = {
            tm.TASKS: pc.Counter(tm.TASKS, "tasks run, by outcome", [*tm.LABELS, "outcome"], **kw),
            tm.DURATION: pc.Histogram(tm.DURATION, "task run time", tm.LABELS, **kw),
            tm.QUEUE_LATENCY: pc.Histogram(
                tm.QUEUE_LATENCY,
                "enqueue (or due time) to start",
                tm.LABELS,
                buckets=tm.LATENCY_BUCKETS,
                **kw,
            ),
            tm.DEAD_LETTERS: pc.Counter(tm.DEAD_LETTERS, "messages dead-lettered", ["queue"], **kw),
            tm.BROKER_CALLS: pc.Counter(tm.BROKER_CALLS, "broker calls", ["call"], **kw),
            tm.BROKER_MESSAGES: pc.Counter(
                tm.BROKER_MESSAGES, "messages received or acknowledged", ["call"], **kw
            ),
        }
        return self._metrics

    def _series(self, app: App, envelope: Any) -> _Series:
        """The labelled children of one (task, queue), made once: ``labels()`` costs a lock
        and a validation per call, a dict lookup here costs neither."""
        key = (tm.task_label(app, envelope.task), self._queues(envelope.queue))
        series = self._children.get(key)
        if series is None:
            metrics = self._ensure()
            series = _Series(
                metrics[tm.TASKS],
                metrics[tm.DURATION].labels(*key),
                metrics[tm.QUEUE_LATENCY].labels(*key),
                key,
            )
            self._children[key] = series
        return series

    # --- hooks --------------------------------------------------------------------------------
    def process_start(self, app: App, **kwargs: Any) -> None:
        self._ensure()

    def before_execute(self, app: App, **kwargs: Any) -> None:
        envelope = kwargs["envelope"]
        self._series(app, envelope).latency.observe(tm.queue_latency(envelope))
        self._runs.start(kwargs["request"])

    def after_execute(self, app: App, **kwargs: Any) -> None:
        series = self._series(app, kwargs["envelope"])
        series.count(tm.outcome_label(kwargs["state"]))
        took = self._runs.stop(kwargs["request"])
        if took is not None:
            series.duration.observe(took)

    def revoked(self, app: App, **kwargs: Any) -> None:
        self._series(app, kwargs["envelope"]).count("revoked")

    def dead_letter(self, app: App, **kwargs: Any) -> None:
        queue = self._queues(kwargs["delivery"].queue)
        self._ensure()[tm.DEAD_LETTERS].labels(queue).inc()

    def worker_start(self, app: App, **kwargs: Any) -> None:
        worker = kwargs["worker"]
        if worker.pool_kind == "processes":
            if not os.environ.get(MULTIPROC_ENV):
                self._own_dir = tempfile.mkdtemp(prefix="cloudq-metrics-")
                os.environ[MULTIPROC_ENV] = self._own_dir
            pass_to_pool_children(f"{__name__}:{pool_child.__name__}")
        metrics = self._ensure()
        self._count_broker_calls(app, metrics)
        if self.port is None:
            return
        pc = require_client()
        registry = self.registry
        if registry is None:
            from prometheus_client import multiprocess

            registry = pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(_WorkerCollector(worker))
        self.registry = registry
        self._server, _ = pc.start_http_server(self.port, self.address, registry=registry)
        host, port = self._server.server_address[:2]
        where = os.environ.get(MULTIPROC_ENV)
        logger.info(
            "metrics on http://%s:%d/metrics%s",
            host,
            port,
            f" (multiprocess samples in {where})" if where else "",
        )

    def worker_stop(self, app: App, **kwargs: Any) -> None:
        for unwrap in self._unwrap:
            unwrap()
        self._unwrap.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            if os.environ.get(MULTIPROC_ENV) == self._own_dir:
                del os.environ[MULTIPROC_ENV]
            self._own_dir = None

    # --- broker calls -------------------------------------------------------------------------
    def _count_broker_calls(self, app: App, metrics: dict[str, Any]) -> None:
        broker = app.broker
        for call in ("receive", "ack"):
            method = getattr(broker, call)
            calls = metrics[tm.BROKER_CALLS].labels(call)
            messages = metrics[tm.BROKER_MESSAGES].labels(call)
            counted = _counted(method, call, calls, messages)
            try:
                setattr(broker, call, counted)
            except AttributeError:  # a broker with __slots__: no call counts, nothing breaks
                logger.warning("broker %r: its %s calls are not counted", broker, call)
                continue
            self._unwrap.append(functools.partial(delattr, broker, call))


def _counted(method: Callable[..., Any], call: str, calls: Any, messages: Any) -> Any:
    @functools.wraps(method)
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.inc()
        if call == "ack":
            messages.inc(len(args[0]) if args else 0)
            return method(*args, **kwargs)
        got = method(*args, **kwargs)
        messages.inc(len(got))
        return got

    return counted


def pool_child() -> PrometheusMetrics:
    """What a processes-pool child adds: records into the worker's multiprocess directory."""
    return PrometheusMetrics()
