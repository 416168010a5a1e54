"""Cloud Scheduler's body on the Pub/Sub emulator: every tick of an idempotent task runs."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App
from tests.fixtures.pubsub_emulator import GCP_PROJECT, unique_prefix
from tests.integration.ticks_scenario import every_tick_runs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_every_cloud_scheduler_tick_runs(pubsub_env: str) -> None:
    app = App(
        "ticks",
        broker=f"pubsub://{GCP_PROJECT}?prefix={unique_prefix('ticks')}",
        backend=f"memory://{uuid.uuid4().hex}",
    )
    try:
        runs = every_tick_runs(app, "cloud-scheduler")
        assert all(r.removeprefix("beat-nightly-").isdigit() for r in runs), runs  # Pub/Sub ids
    finally:
        app.close()
