"""A smoke run of ``bench/run.py`` with a tiny N, so the benchmark cannot rot.

No timing assertions: only that the report is written and every contender ran every task.
The raw loops and cloudq on SQS need only the dev dependencies (moto, boto3, cloudq_sqs); Celery
and dramatiq are checked in a second test that skips when they are not installed (fails under
``CI=true``, where a missing peer must not turn into a green run). Pub/Sub and Service Bus run
in a third, on the emulators the tests use (java and the gcloud SDK's Pub/Sub emulator, the
project's Service Bus test endpoint), with Celery on kombu's gcpubsub transport where it can be
imported (it needs google-cloud-monitoring, which the dev dependencies do not install).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import missing_tool

ROOT = Path(__file__).resolve().parents[2]
RAN = re.compile(r"\| (\d+)/(\d+) \|$")
N, LATENCY_N = 20, 2

pytestmark = pytest.mark.integration


def _bench(tmp_path: Path, *args: str, timeout: float = 90) -> str:
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("psutil") is None:
        missing_tool("the bench needs moto[server] and psutil")
    report = tmp_path / "REPORT.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--n",
            str(N),
            "--sweeps",
            "1",
            "--reps",
            "1",
            "--latency-n",
            str(LATENCY_N),
            "--idle-wait",
            "0.5",
            "--out",
            str(report),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert report.exists(), done.stderr[-3000:]
    return report.read_text()


def _all_ran(text: str, expected: list[int], sweeps: int = 1) -> None:
    """One table row per contender, in order, each having run every task it was sent: a
    warm-up task and N per sweep, and the latency tasks spread over the sweeps."""
    table = [line for line in text.splitlines() if RAN.search(line)]
    assert len(table) == len(expected), text
    for line, n in zip(table, expected, strict=True):
        ran, sent = RAN.search(line).groups()  # type: ignore[union-attr]
        assert ran == sent == str(sweeps * (1 + n) + LATENCY_N), line
    assert "failed" not in text and "Not run" not in text, text
    assert "## Machine and versions" in text


def test_smoke_raw_and_cloudq(tmp_path: Path) -> None:
    text = _bench(
        tmp_path,
        *("--only", "raw-batch,cloudq-batch", "--cold-reps", "1", "--no-chart", "--sweeps", "2"),
        timeout=70,
    )
    _all_ran(text, [N, N], sweeps=2)
    assert "run 2 time(s), in sweeps alternately forward and backward" in text
    assert "raw boto3 (batch 10)" in text and "cloudq (send_envelopes)" in text
    assert "## Cold start" in text


def test_smoke_celery_and_dramatiq(tmp_path: Path) -> None:
    for module in ("celery", "kombu", "dramatiq", "dramatiq_sqs"):
        # kombu replaces its own module object (no __spec__) once another test imported it.
        if module not in sys.modules and importlib.util.find_spec(module) is None:
            missing_tool(f"{module} is not installed (the bench's peers: celery, dramatiq-sqs)")
    text = _bench(
        tmp_path, "--only", "celery,dramatiq", "--cold-reps", "1", "--no-chart", timeout=55
    )
    _all_ran(text, [N, N])


def _pubsub_emulator_present() -> None:
    from tests.fixtures import pubsub_emulator

    pubsub_emulator._java()
    pubsub_emulator._sdk_file(pubsub_emulator.PUBSUB_JAR, "pubsub-emulator")


def test_smoke_pubsub_and_servicebus(tmp_path: Path) -> None:
    """Both sections in one run (with the chart: one row of panels per provider); Celery on
    kombu's gcpubsub too where its transport can be imported."""
    _pubsub_emulator_present()
    for module in ("proton", "azure.servicebus", "cloudq_servicebus", "cloudq_pubsub"):
        # kombu replaces its own module object (no __spec__) once another test imported it.
        if module not in sys.modules and importlib.util.find_spec(module) is None:
            missing_tool(f"{module} is not installed (uv sync --all-packages)")
    pubsub = ["ps-raw-stream", "ps-raw-sync", "ps-cloudq-batch"]
    try:
        import kombu.transport.gcpubsub  # noqa: F401
    except ImportError:
        pass  # an optional extra, not in the dev dependencies: the report says why
    else:
        pubsub.append("ps-celery")
    only = ",".join([*pubsub, "sb-raw-batch", "sb-cloudq-batch"])
    text = _bench(tmp_path, "--providers", "pubsub,servicebus", "--only", only, "--cold-reps", "0")
    # Pub/Sub's N is 3 x --n, Service Bus's 2 x --n
    _all_ran(text, [3 * N] * len(pubsub) + [2 * N] * 2)
    assert "## Pub/Sub (emulator)" in text and "## Service Bus (test endpoint)" in text
    assert "streaming pull" in text and "raw azure-servicebus" in text
    assert (tmp_path / "report.png").stat().st_size > 0


@pytest.mark.parametrize("how", [["-c", "2"], ["--inline"]], ids=["pool", "inline"])
def test_worker_overhead_runs_every_task(how: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "worker_overhead.py"), "--n", "200", *how],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    label = "-c 2" if how[0] == "-c" else "inline"
    assert re.fullmatch(
        rf"200 tasks, {label}, hooks none, 3 run\(s\): [\d.]+ us CPU per task "
        r"\(median; [\d.]+-[\d.]+\), [\d,]+ tasks/s\n",
        done.stdout,
    ), done.stdout


def test_merge_rows_takes_medians_and_keeps_every_latency_and_the_first_error() -> None:
    from bench.measure import Contender, Row, merge_rows

    contender = Contender("k", "label", "raw_boto3", True, ())
    rows = [
        Row(contender, n=10, processed=11, expected=11, producer_cpu=cpu, worker_cpu=cpu * 2)
        for cpu in (3.0, 1.0, 2.0)
    ]
    for i, row in enumerate(rows):
        row.latencies = [float(i)]
    merged = merge_rows(rows)
    assert (merged.producer_cpu, merged.worker_cpu) == (2.0, 4.0)
    assert (merged.processed, merged.expected, merged.error) == (33, 33, "")
    assert sorted(merged.latencies) == [0.0, 1.0, 2.0]
    rows[0].error = "TimeoutError: 3/11 tasks run"
    failed = merge_rows(rows)
    assert failed.error == "TimeoutError: 3/11 tasks run"
    assert failed.producer_cpu == 1.5  # the median of the passes that did not fail
