"""Exported schedules send one fixed body on every tick: each tick must still be a run of its own
(an ``idempotent=True`` task would otherwise run once and be skipped forever after)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from cloudq import App
from cloudq.adapters.base import OutgoingMessage
from cloudq.beat_export import export
from cloudq.testing import start_worker, wait_for


def make_app(**settings: object) -> tuple[App, list[str]]:
    name = uuid.uuid4().hex
    app = App("x", broker=f"memory://{name}", backend=f"memory://{name}", **settings)  # type: ignore[arg-type]
    app.conf.beat_schedule = {"nightly": {"task": "rollup", "schedule": "0 3 * * *"}}
    runs: list[str] = []

    @app.task(name="rollup", idempotent=True, bind=True)
    def rollup(self: Any) -> None:
        runs.append(self.request.id)

    return app, runs


def deliver(app: App, body: str, *message_ids: str | None) -> None:
    """What the scheduler does on each tick: the same body, as a new message (the provider
    assigns its id when the scheduler sets none)."""
    app.broker.send(
        "default", [OutgoingMessage(body=body.encode(), message_id=m) for m in message_ids]
    )


def test_every_eventbridge_tick_of_an_idempotent_task_runs() -> None:
    app, runs = make_app(signing_keys=["k1"])
    body = export(app, "eventbridge")["nightly"]["input"]  # SQS gets it verbatim
    deliver(app, body, "sqs-msg-1", "sqs-msg-2")
    with start_worker(app, ["default"], concurrency=1):
        wait_for(lambda: len(runs) == 2, timeout=10, message="both ticks ran")
    assert runs == ["beat-nightly-sqs-msg-1", "beat-nightly-sqs-msg-2"]


def test_every_cloud_scheduler_tick_runs_and_a_redelivered_tick_is_skipped() -> None:
    app, runs = make_app()
    data = export(app, "cloud-scheduler")["nightly"]["input"]
    body = base64.b64decode(base64.b64encode(data.encode())).decode()  # the module's encoding
    deliver(app, body, "1111", "2222", "2222")  # Pub/Sub message ids; the last a redelivery
    with start_worker(app, ["default"], concurrency=1):
        wait_for(lambda: len(runs) == 2, timeout=10, message="both ticks ran")
        queue_empty = lambda: app.broker.stats("default").visible == 0  # noqa: E731
        wait_for(queue_empty, timeout=10, message="the redelivery was taken")
    assert sorted(runs) == ["beat-nightly-1111", "beat-nightly-2222"]


def test_the_exported_body_asks_for_a_per_tick_id() -> None:
    app, _ = make_app()
    for fmt in ("eventbridge", "cloud-scheduler", "json"):
        body = json.loads(export(app, fmt)["nightly"]["input"])
        assert body["id"] == "beat-nightly"
        assert body["headers"]["cloudq-id-per-tick"] == "message-id"


def test_every_logic_app_tick_runs_with_its_scheduled_time_as_id() -> None:
    app, runs = make_app()
    entry = export(app, "logic-app")["nightly"]
    assert entry["message_id"] == "beat-nightly-@{trigger().scheduledTime}"
    ticks = [entry["message_id"].replace("@{trigger().scheduledTime}", t) for t in TICKS]
    deliver(app, entry["input"], *ticks, ticks[1])  # the last: a redelivery of the second tick
    with start_worker(app, ["default"], concurrency=1):
        wait_for(lambda: len(runs) == 2, timeout=10, message="both ticks ran")
        queue_empty = lambda: app.broker.stats("default").visible == 0  # noqa: E731
        wait_for(queue_empty, timeout=10, message="the redelivery was taken")
    assert sorted(runs) == ticks  # the Logic App's MessageId is kept as the task id


TICKS = ("2030-01-01T03:00:00Z", "2030-01-02T03:00:00Z")
