"""cloudq against a raw boto3 loop, Celery + kombu SQS and dramatiq + dramatiq_sqs, on one moto.

    uv run python bench/run.py [--n 1000] [--latency-n 30] [--only raw-batch,cloudq-batch]
                               [--profile]   # + py-spy hot spots of the cloudq worker

Starts a moto server on a free loopback port (stopped at exit), runs every scenario for every
contender in the same run and writes ``bench/REPORT.md`` and ``bench/report.png``:

1. produce N tasks (the producer's wall and its own process CPU, around the send calls only);
2. consume N no-op tasks with one worker subprocess (wall from the first send to the last task
   run; the worker's process-tree CPU from psutil). Sends go in rounds of 100 and each round
   waits until it has been run, so moto's queues stay shallow (moto slows down when deep);
3. round trip enqueue → start, p50/p99, one task at a time (low load);
4. cold start: a fresh interpreter importing the library, and import + app + 10 tasks;
5. the idle worker's RSS (process tree) after one warm-up task.

The emulator's CPU is never counted: it is the bottleneck in wall time, the CPU columns are the
libraries' own cost.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROUND = 100
WAIT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    module: str
    batch: bool
    needs: tuple[str, ...]


CONTENDERS = [
    Contender("raw-batch", "raw boto3 (batch 10)", "raw_boto3", True, ("boto3",)),
    Contender("raw-single", "raw boto3 (1 SendMessage/task)", "raw_boto3", False, ("boto3",)),
    Contender("cloudq-batch", "cloudq (send_envelopes)", "cloudq_app", True, ("cloudq_sqs",)),
    Contender("cloudq-delay", "cloudq (delay())", "cloudq_app", False, ("cloudq_sqs",)),
    Contender("celery", "Celery + kombu SQS (-c 4 threads)", "celery_app", False, ("celery",)),
    Contender(
        "dramatiq", "dramatiq + dramatiq_sqs (1x4)", "dramatiq_app", False, ("dramatiq_sqs",)
    ),
]


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


def available(contender: Contender) -> bool:
    return all(importlib.util.find_spec(mod) is not None for mod in contender.needs)


# --- moto ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    for _ in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=1):
                    return proc, url
            except urllib.error.HTTPError:
                return proc, url
            except OSError:
                time.sleep(0.05)
        stop(proc)
    raise RuntimeError(f"moto server did not start: {log.read_text(errors='replace')[-2000:]}")


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process (and its children: dramatiq forks), SIGKILL after 10 s."""
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


def run_contender(
    contender: Contender, n: int, latency_n: int, workdir: Path, spy: Path | None = None
) -> Row:
    row = Row(contender, n=n, expected=1 + n + latency_n)
    tag = uuid.uuid4().hex[:6]
    out = workdir / f"{contender.key}-{tag}.out"
    os.environ.update(
        BENCH_QUEUE=f"bench{tag}{contender.key.replace('-', '')}",
        BENCH_OUT=str(out),
        BENCH_PREFIX=f"b{tag}-",
    )
    module = importlib.import_module(f"bench.contenders.{contender.module}")
    module = importlib.reload(module)  # the queue name is read at import
    producer = module.Producer(batch=contender.batch)
    log = workdir / f"{contender.key}-{tag}.log"
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            module.worker_cmd(),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
        )
    counter = Counter(out)
    try:
        producer.send([time.time()])  # warm-up: the worker is up and has run one task
        counter.wait(1, proc)
        time.sleep(2.0)
        row.idle_rss_mb = tree_rss_mb(proc.pid)
        # (1) + (2): rounds of ROUND, each run before the next is sent
        spy_proc = start_spy(proc.pid, spy) if spy else None
        worker0, wall0 = tree_cpu(proc.pid), time.perf_counter()
        done = 1
        for start in range(0, n, ROUND):
            count = min(ROUND, n - start)
            cpu0, send0 = own_cpu(), time.perf_counter()
            producer.send([time.time()] * count)
            row.produce_wall += time.perf_counter() - send0
            row.producer_cpu += own_cpu() - cpu0
            done += count
            counter.wait(done, proc)
        row.consume_wall = time.perf_counter() - wall0
        row.worker_cpu = tree_cpu(proc.pid) - worker0
        if spy_proc is not None:
            spy_proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            spy_proc.wait(30)
        # (3): one task at a time
        for _ in range(latency_n):
            producer.send([time.time()])
            done += 1
            counter.wait(done, proc)
        row.latencies = counter.lines[-latency_n:] if latency_n else []
    except (RuntimeError, TimeoutError) as exc:
        row.error = str(exc)
    finally:
        stop(proc)
        row.processed = counter.poll()
    if row.error or row.processed != row.expected:
        tail = log.read_text(errors="replace")[-1500:]
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
)


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
    path = path.removeprefix("adapters/sqs/")
    return f"{path}:{fn}"


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
        own = {f for f in frames if f.startswith(("cloudq", "cloudq_sqs/"))}
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


# --- cold start ------------------------------------------------------------------------------
def _tasks(decorate: str) -> str:
    return f"for i in range(10):\n    exec(f'def t{{i}}(x): return x')\n    {decorate}\n"


COLD = {
    "bare interpreter": "pass",
    "import cloudq": "import cloudq",
    "import celery": "import celery",
    "import dramatiq": "import dramatiq",
    "cloudq: import + App + 10 tasks": "from cloudq import App\napp = App('x', broker='sqs://')\n"
    + _tasks("app.task(name=f'x.t{i}')(globals()[f't{i}'])"),
    "Celery: import + Celery + 10 tasks": "from celery import Celery\n"
    "app = Celery('x', broker='sqs://')\n"
    + _tasks("app.task(name=f'x.t{i}')(globals()[f't{i}'])")
    + "app.finalize()\n",
    "dramatiq: import + SQSBroker + 10 actors": "import dramatiq\n"
    "from dramatiq_sqs import SQSBroker\n"
    "dramatiq.set_broker(SQSBroker(region_name='us-east-1'))\n"
    + _tasks("dramatiq.actor(actor_name=f't{i}')(globals()[f't{i}'])"),
}


def cold_start(reps: int) -> dict[str, float]:
    """Median wall (ms) of a fresh interpreter running each snippet; nan if it fails."""
    result: dict[str, float] = {}
    for name, code in COLD.items():
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=False
            )
            if done.returncode != 0:
                samples = []
                break
            samples.append((time.perf_counter() - t0) * 1000)
        result[name] = statistics.median(samples) if samples else float("nan")
    return result


# --- report ----------------------------------------------------------------------------------
def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def div(a: float, b: float) -> float:
    """a / b, or nan when b is 0 (tiny N: CPU times tick in 10 ms)."""
    return a / b if b else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not math.isnan(a) and not math.isnan(b) else "n/a"


def targets(rows: dict[str, Row], cold: dict[str, float]) -> list[str]:
    """The issue's targets for cloudq: (what, measured ratio/value, target, met?)."""
    lines = ["| target (issue 11) | measured | goal | met |", "|---|---|---|---|"]

    def add(what: str, value: float, goal: float, text: str, goal_text: str) -> None:
        met = "yes" if not math.isnan(value) and value <= goal else "no"
        lines.append(f"| {what} | {text} | {goal_text} | {met} |")

    raw, raw1 = rows.get("raw-batch"), rows.get("raw-single")
    cqb, cqd = rows.get("cloudq-batch"), rows.get("cloudq-delay")
    if raw and cqb:
        w = div(cqb.worker_cpu, raw.worker_cpu)
        add("worker CPU vs raw loop", w, 1.3, f"{w:.2f}x", "<= 1.3x")
        p = div(cqb.producer_cpu, raw.producer_cpu)
        add("producer CPU, batch send vs raw batch", p, 1.3, f"{p:.2f}x", "<= 1.3x")
        wall = div(cqb.consume_wall, raw.consume_wall)
        add("wall (produce + consume) vs raw loop", wall, 1.2, f"{wall:.2f}x", "<= 1.2x")
    if raw1 and cqd:
        p = div(cqd.producer_cpu, raw1.producer_cpu)
        add("producer CPU, delay() vs raw SendMessage", p, 1.3, f"{p:.2f}x", "<= 1.3x")
    if cqb:
        for peer in ("celery", "dramatiq"):
            if peer in rows:
                cheaper = div(rows[peer].worker_cpu, cqb.worker_cpu)
                add(
                    f"worker CPU cheaper than {peer}",
                    div(5, cheaper),
                    1.0,
                    f"{cheaper:.2f}x cheaper",
                    ">= 5x cheaper",
                )
        add("idle worker RSS", cqb.idle_rss_mb, 60, f"{cqb.idle_rss_mb:.0f} MB", "<= 60 MB")
    c, k = (
        cold.get("cloudq: import + App + 10 tasks"),
        cold.get("Celery: import + Celery + 10 tasks"),
    )
    if c and k:
        cold_ratio = div(c, k)
        what = "cold start (import + App + 10 tasks) vs Celery"
        add(what, cold_ratio, 0.5, f"{cold_ratio:.2f}x", "<= 0.5x")
    return lines


def write_report(
    rows: list[Row],
    cold: dict[str, float],
    args: argparse.Namespace,
    path: Path,
    chart: str,
    spots: list[str],
) -> None:
    by_key = {row.contender.key: row for row in rows if not row.error}
    base = by_key.get("raw-batch")
    out = [
        "# cloudq benchmarks on moto SQS",
        "",
        f"Written by `{args.command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "One run, all contenders in sequence on the same moto server; each contender has its",
        f"own queue. N = {args.n} no-op tasks sent in rounds of {ROUND} (each round run before",
        f"the next is sent, so queue depth <= {ROUND}); latency over {args.latency_n} tasks sent",
        "one at a time. CPU is the client processes' own (producer: this process around the",
        "send calls; worker: the worker subprocess tree via psutil), never moto's. Wall includes",
        "moto, which is the bottleneck in wall time.",
        "",
        "| contender | wall s (produce + consume) | tasks/s | producer CPU s / 1k |"
        " worker CPU s / 1k | worker CPU vs raw | p50 ms | p99 ms | idle RSS MB | ran |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        c = row.contender
        if row.error:
            first = row.error.strip().splitlines()[0] if row.error.strip() else "failed"
            out.append(f"| {c.label} | failed: {first} | | | | | | | | |")
            continue
        vs = ratio(row.worker_cpu, base.worker_cpu) if base else "n/a"
        out.append(
            f"| {c.label} | {row.consume_wall:.2f} | {div(row.n, row.consume_wall):.0f} | "
            f"{row.per_1k(row.producer_cpu):.3f} | {row.per_1k(row.worker_cpu):.3f} | {vs} | "
            f"{row.pct(0.5):.0f} | {row.pct(0.99):.0f} | {row.idle_rss_mb:.0f} | "
            f"{row.processed}/{row.expected} |"
        )
    out += ["", "Producer wall for N (scenario 1, send calls only):", ""]
    out += ["| contender | produce wall s | tasks/s |", "|---|---|---|"]
    for row in rows:
        if not row.error:
            out.append(
                f"| {row.contender.label} | {row.produce_wall:.2f} | "
                f"{div(row.n, row.produce_wall):.0f} |"
            )
    out += ["", "## Cold start (fresh interpreter, median wall ms)", ""]
    out += ["| snippet | ms |", "|---|---|"]
    out += [f"| {name} | {ms:.0f} |" for name, ms in cold.items()]
    out += ["", "## cloudq against the targets of issue 11", "", *targets(by_key, cold), ""]
    if chart:
        out += [f"![chart]({chart})", ""]
    if spots:
        out += ["## cloudq worker hot spots (separate pass, not in the table)", "", *spots, ""]
    failed = [row for row in rows if row.error]
    if failed:
        out += ["## Failures", ""]
        for row in failed:
            out += [f"### {row.contender.label}", "", "```", row.error.strip()[-1500:], "```", ""]
    out += ["## Machine and versions", ""]
    out.append(f"- {platform.platform()}, Python {platform.python_version()}")
    out.append(f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical")
    dists = ["cloudq", "boto3", "botocore", "moto", "celery", "kombu", "dramatiq", "dramatiq-sqs"]
    out.append("- " + ", ".join(f"{d} {version(d)}" for d in dists))
    path.write_text("\n".join(out) + "\n")


def write_chart(rows: list[Row], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    good = [row for row in rows if not row.error]
    if not good:
        return False
    labels = [row.contender.key for row in good]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = [
        ("worker CPU s / 1k tasks", [row.per_1k(row.worker_cpu) for row in good]),
        ("producer CPU s / 1k tasks", [row.per_1k(row.producer_cpu) for row in good]),
        ("wall s (produce + consume N)", [row.consume_wall for row in good]),
    ]
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.bar(labels, values)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency-n", type=int, default=30)
    parser.add_argument("--cold-reps", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated contender keys")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "REPORT.md")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the cloudq worker in an extra pass"
    )
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    args.command = " ".join(["uv run python bench/run.py", *given])
    wanted = [k for k in args.only.split(",") if k]
    chosen = [c for c in CONTENDERS if not wanted or c.key in wanted]
    missing = [c.key for c in chosen if not available(c)]
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}", file=sys.stderr)
    chosen = [c for c in chosen if c.key not in missing]

    workdir = args.out.parent / ".bench-work"
    workdir.mkdir(parents=True, exist_ok=True)
    moto, url = start_moto(workdir / "moto.log")
    for var in ("AWS_ENDPOINT_URL_SQS", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
    )
    rows = []
    spots: list[str] = []
    try:
        for contender in chosen:
            print(f"{contender.key} ...", file=sys.stderr, flush=True)
            rows.append(run_contender(contender, args.n, args.latency_n, workdir))
            if rows[-1].error:
                print(f"  failed: {rows[-1].error[:300]}", file=sys.stderr)
        if args.profile and py_spy() and available(CONTENDERS[2]):
            print("profiling the cloudq worker ...", file=sys.stderr, flush=True)
            collapsed = workdir / "cloudq-worker.pyspy.txt"
            collapsed.unlink(missing_ok=True)
            run_contender(CONTENDERS[2], args.n, 0, workdir, spy=collapsed)
            spots = hot_spots(collapsed) if collapsed.exists() else ["(py-spy wrote nothing)"]
        elif args.profile:
            spots = ["(py-spy not found: no profile)"]
    finally:
        stop(moto)
    cold = cold_start(args.cold_reps) if args.cold_reps else {}
    chart = ""
    if not args.no_chart and write_chart(rows, args.out.with_name("report.png")):
        chart = "report.png"
    write_report(rows, cold, args, args.out, chart, spots)
    print(args.out.read_text())
    return rows


if __name__ == "__main__":
    main()
