"""A smoke run of ``bench/run.py`` with a tiny N, so the benchmark cannot rot.

No timing assertions: only that the report is written and every contender ran every task.
The raw boto3 loop and cloudq need only the dev dependencies (moto, boto3, cloudq-sqs); Celery
and dramatiq are checked in a second test that skips when they are not installed (fails under
``CI=true``, where a missing peer must not turn into a green run).
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

pytestmark = pytest.mark.integration


def _smoke(tmp_path: Path, only: list[str]) -> str:
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("psutil") is None:
        missing_tool("the bench needs moto[server] and psutil")
    report = tmp_path / "REPORT.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--n",
            "20",
            "--latency-n",
            "2",
            "--cold-reps",
            "1",
            "--no-chart",
            "--only",
            ",".join(only),
            "--out",
            str(report),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert report.exists(), done.stderr[-3000:]
    text = report.read_text()
    table = [line for line in text.splitlines() if RAN.search(line)]
    assert len(table) == len(only), text
    for line in table:
        ran, expected = RAN.search(line).groups()  # type: ignore[union-attr]
        assert ran == expected == str(1 + 20 + 2), line
    assert "failed" not in text, text
    assert "## Cold start" in text and "## Machine and versions" in text
    return text


def test_smoke_raw_and_cloudq(tmp_path: Path) -> None:
    text = _smoke(tmp_path, ["raw-batch", "cloudq-batch"])
    assert "raw boto3 (batch 10)" in text and "cloudq (send_envelopes)" in text


def test_smoke_celery_and_dramatiq(tmp_path: Path) -> None:
    for module in ("celery", "kombu", "dramatiq", "dramatiq_sqs"):
        if importlib.util.find_spec(module) is None:
            missing_tool(f"{module} is not installed (the bench's peers: celery, dramatiq-sqs)")
    _smoke(tmp_path, ["celery", "dramatiq"])
