"""A smoke run of ``bench/async_producer.py`` (tiny duration), so the benchmark cannot rot.

No timing assertions: only that both endpoints served requests without errors and the ratio
line is printed.
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
TINY = ("--seconds", "0.5", "--rounds", "1", "--concurrency", "4")

pytestmark = pytest.mark.integration


def test_async_producer_bench_runs_both_endpoints() -> None:
    for module in ("moto", "fastapi", "uvicorn", "httpx"):
        if importlib.util.find_spec(module) is None:
            missing_tool(f"the async producer bench needs {module} (dev group)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "async_producer.py"), *TINY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for label in ("adelay()", "delay()"):
        row = re.search(rf"^{re.escape(label)}\s+(\d+)\s+\S+\s+\S+\s+(\d+)$", done.stdout, re.M)
        assert row is not None, done.stdout
        assert int(row.group(1)) > 0 and row.group(2) == "0", done.stdout
    assert "ratio adelay()/delay():" in done.stdout
