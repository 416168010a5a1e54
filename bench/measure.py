"""What every provider's section shares: contenders, one run of a contender, CPU and RSS.

A contender is a module in ``bench/contenders`` with a ``Producer`` (used in this process) and a
``worker_cmd()`` (run as a subprocess). Its task appends one line per run to ``$BENCH_OUT``, so
the driver counts tasks and reads latencies without a result backend.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ROUND = 100
WAIT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    module: str
    batch: bool
    needs: tuple[str, ...]
    mode: str = ""
    """``$BENCH_MODE`` for the contender's module (raw Pub/Sub: stream, sync or single)."""
    why_missing: str = ""
    """Said instead of "X is not installed" when ``needs`` cannot be imported."""

    def missing(self) -> str:
        """Why this contender cannot run here, or "" if it can."""
        for module in self.needs:
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                return self.why_missing or f"{module} is not installed"
        return ""


@dataclass(frozen=True)
class Provider:
    """One section of the report: a broker, the emulator the bench starts, its contenders."""

    key: str
    title: str
    contenders: tuple[Contender, ...]
    endpoint: Callable[[Path], AbstractContextManager[str]]
    """Starts the emulator, points the environment at it and yields what it is; stops it."""
    cloudq_url: str
    """cloudq's broker URL, with ``{prefix}``."""
    raws: tuple[str, ...]
    """Raw-SDK contenders the ratios are taken against; the first is the table's "vs raw"."""
    raw_single: str
    cloudq_batch: str
    cloudq_delay: str
    peers: tuple[str, ...]
    dists: tuple[str, ...]
    notes: tuple[str, ...] = ()
    scale: int = 1
    """N here is ``--n`` times this: a fast emulator gets more tasks, so that the worker's CPU,
    read in 10 ms ticks, is not a handful of ticks."""


@dataclass
class Row:
    contender: Contender
    n: int = 0
    processed: int = 0
    expected: int = 0
    produce_wall: float = 0.0
    producer_cpu: float = 0.0
    consume_wall: float = 0.0
    worker_cpu: float = 0.0
    idle_rss_mb: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error: str = ""

    def per_1k(self, seconds: float) -> float:
        return seconds / self.n * 1000 if self.n else float("nan")

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def merge_rows(rows: list[Row]) -> Row:
    """One contender's sweeps as one row: the median of each measure, every latency, the
    first error."""
    first = rows[0]
    merged = Row(first.contender, n=first.n)
    merged.processed = sum(row.processed for row in rows)
    merged.expected = sum(row.expected for row in rows)
    merged.error = next((row.error for row in rows if row.error), "")
    good = [row for row in rows if not row.error] or rows
    for name in ("produce_wall", "producer_cpu", "consume_wall", "worker_cpu", "idle_rss_mb"):
        setattr(merged, name, statistics.median(getattr(row, name) for row in good))
    merged.latencies = [value for row in rows for value in row.latencies]
    return merged


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, for None, remove) environment variables; put the old values back at exit."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stop_tree(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the worker and its children (dramatiq forks), SIGKILL after 10 s."""
    import psutil

    if proc.poll() is not None:
        return
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=10)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    proc.wait(10)


# --- measuring -------------------------------------------------------------------------------
def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tree_cpu(pid: int) -> float:
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for member in [root, *root.children(recursive=True)]:
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss_mb(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    total = 0
    for member in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += member.memory_info().rss
    return total / 2**20


class Counter:
    """Reads the lines (one per task run) the workers append to the output file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[float] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> int:
        if self.path.exists():
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
            self._offset += len(chunk)
            data = self._partial + chunk
            *complete, self._partial = data.split(b"\n")
            self.lines.extend(float(line) for line in complete if line)
        return len(self.lines)

    def wait(self, target: int, proc: subprocess.Popen[Any], timeout: float = WAIT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.poll() < target:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.lines)}/{target} tasks run after {timeout:.0f} s")
            time.sleep(0.002)


def _rounds(
    row: Row, producer: Any, counter: Counter, proc: subprocess.Popen[bytes], reps: int
) -> int:
    """Scenarios 1 + 2: N tasks in rounds of ROUND, each run before the next is sent, ``reps``
    times; the row keeps the median of each measure (one pass on a shared 2-core machine swings
    by tens of percent). Returns how many tasks the worker has run in all."""
    passes: list[tuple[float, float, float, float]] = []
    done = 1
    for _ in range(reps):
        worker0, wall0 = tree_cpu(proc.pid), time.perf_counter()
        produce_wall = producer_cpu = 0.0
        for start in range(0, row.n, ROUND):
            count = min(ROUND, row.n - start)
            cpu0, send0 = own_cpu(), time.perf_counter()
            producer.send([time.time()] * count)
            produce_wall += time.perf_counter() - send0
            producer_cpu += own_cpu() - cpu0
            done += count
            counter.wait(done, proc)
        consume_wall = time.perf_counter() - wall0
        passes.append((produce_wall, producer_cpu, consume_wall, tree_cpu(proc.pid) - worker0))
    row.produce_wall, row.producer_cpu, row.consume_wall, row.worker_cpu = (
        statistics.median(measure) for measure in zip(*passes, strict=True)
    )
    return done


def run_contender(
    provider: Provider,
    contender: Contender,
    n: int,
    latency_n: int,
    workdir: Path,
    idle_wait: float = 2.0,
    spy: Path | None = None,
    reps: int = 1,
) -> Row:
    """Scenarios 1, 2, 3 and 5 for one contender: a worker subprocess, this process producing."""
    row = Row(contender, n=n, expected=1 + n * reps + latency_n)
    tag = uuid.uuid4().hex[:6]
    out = workdir / f"{contender.key}-{tag}.out"
    os.environ.update(
        BENCH_PROVIDER=provider.key,
        BENCH_MODE=contender.mode,
        BENCH_QUEUE=f"bench{tag}{contender.key.replace('-', '')}",
        BENCH_OUT=str(out),
        BENCH_BROKER=provider.cloudq_url.format(prefix=f"b{tag}-"),
    )
    log = workdir / f"{contender.key}-{tag}.log"
    extra_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    counter = Counter(out)
    producer: Any = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        module = importlib.import_module(f"bench.contenders.{contender.module}")
        module = importlib.reload(module)  # the queue name is read at import
        producer = module.Producer(batch=contender.batch)
        with log.open("wb") as log_fh:
            proc = subprocess.Popen(
                module.worker_cmd(),
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *extra_path])},
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
            )
        producer.send([time.time()])  # warm-up: the worker is up and has run one task
        counter.wait(1, proc)
        time.sleep(idle_wait)
        row.idle_rss_mb = tree_rss_mb(proc.pid)
        spy_proc = start_spy(proc.pid, spy) if spy else None
        done = _rounds(row, producer, counter, proc, reps)
        if spy_proc is not None:
            spy_proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            spy_proc.wait(30)
        # (3): one task at a time
        for _ in range(latency_n):
            producer.send([time.time()])
            done += 1
            counter.wait(done, proc)
        row.latencies = counter.lines[-latency_n:] if latency_n else []
    except Exception as exc:  # noqa: BLE001 - one contender failing must not end the run
        row.error = f"{type(exc).__name__}: {exc}"
    finally:
        if proc is not None:
            stop_tree(proc)
        close = getattr(producer, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        row.processed = counter.poll()
    if row.error or row.processed != row.expected:
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        row.error = (row.error or f"ran {row.processed}/{row.expected}") + f"\n{tail}"
    return row


# --- profile -------------------------------------------------------------------------------
PY_SPY = ("py-spy", "/root/.pyenv/shims/py-spy")
# entry points and pure wrappers: every sample passes through one of them
ENTRY = (
    "cloudq:<module>",
    "cli.py:run",
    "cli.py:worker",
    "worker.py:Worker.run",
    "worker.py:Worker._receive_loop",
    "worker.py:Worker._work",
    "worker.py:Worker._run_one",
    "pool.py:ThreadExecutor.run",
    "broker.py:SQSBroker._call",
    "broker.py:PubSubBroker._call",
)
ADAPTER_DIR = re.compile(r"^adapters/[^/]+/")


def py_spy() -> str | None:
    for name in PY_SPY:
        found = shutil.which(name)
        if found:
            return found
    return None


def start_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on the worker, sampling only the thread holding the GIL (Python CPU)."""
    cmd = [py_spy() or "py-spy", "record", "--pid", str(pid), "--gil", "--format", "raw"]
    cmd += ["-r", "250", "-o", str(out)]
    with out.with_suffix(".log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(1.0)
    return proc


def _frame(raw: str) -> str:
    match = re.match(r"^(.*) \((.*?):\d+\)$", raw)
    if not match:
        return raw
    fn, path = match.groups()
    for cut in ("site-packages/", f"{ROOT}/", "lib/python3.11/"):
        path = path.split(cut, 1)[-1]
    return f"{ADAPTER_DIR.sub('', path)}:{fn}"


def hot_spots(collapsed: Path, top: int = 5) -> list[str]:
    """The cloudq functions with the largest inclusive share of GIL samples, and leaf frames."""
    total = 0
    inclusive: dict[str, int] = {}
    leaves: dict[str, int] = {}
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + n
        own = {f for f in frames if f.startswith("cloudq")}
        for f in own:
            if not f.endswith(ENTRY):
                inclusive[f] = inclusive.get(f, 0) + n
    if not total:
        return ["(py-spy recorded no samples)"]
    out = [f"py-spy `record --gil` of the cloudq worker during scenario 2 ({total} samples):", ""]
    out += ["| cloudq function (inclusive) | share of GIL samples |", "|---|---|"]
    for f, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[: top + 3]:
        out.append(f"| `{f}` | {n / total:.1%} |")
    out += ["", "| leaf frame (self) | share |", "|---|---|"]
    for f, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"| `{f}` | {n / total:.1%} |")
    return out


def profile(provider: Provider, n: int, workdir: Path, idle_wait: float) -> list[str]:
    """An extra pass of the cloudq batch contender with py-spy on its worker: hot spots."""
    contender = next(c for c in provider.contenders if c.key == provider.cloudq_batch)
    if not py_spy():
        return ["(py-spy not found: no profile)"]
    collapsed = workdir / f"{contender.key}-worker.pyspy.txt"
    collapsed.unlink(missing_ok=True)
    row = run_contender(provider, contender, n, 0, workdir, idle_wait, spy=collapsed)
    if row.error:
        return [f"(the profiling pass failed: {row.error.strip().splitlines()[0]})"]
    return hot_spots(collapsed) if collapsed.exists() else ["(py-spy wrote nothing)"]
