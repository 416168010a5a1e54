"""EventBridge Scheduler's body on moto SQS: every tick of an idempotent task runs."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App
from tests.integration.ticks_scenario import every_tick_runs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_every_eventbridge_tick_runs(sqs_env: str) -> None:
    app = App(
        "ticks",
        broker=f"sqs://?prefix=t{uuid.uuid4().hex[:8]}-",
        backend=f"memory://{uuid.uuid4().hex}",
        signing_keys=["k1"],
    )
    runs = every_tick_runs(app, "eventbridge")
    assert all(len(r) == len("beat-nightly-") + 36 for r in runs), runs  # SQS's MessageId
