"""Exported schedules on a real broker: the scheduler's fixed body, sent as the scheduler sends
it (no message id, no attributes), runs an idempotent task once per tick."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloudq import App
from cloudq.adapters.base import OutgoingMessage
from cloudq.beat_export import export
from cloudq.testing import start_worker, wait_for


def every_tick_runs(
    app: App, fmt: str, ticks: int = 3, message_id: Callable[[int], str] | None = None
) -> list[str]:
    """Send ``fmt``'s exported body ``ticks`` times (with ``message_id(i)`` where the scheduler
    sets one); return the task ids the runs saw."""
    app.conf.beat_schedule = {"nightly": {"task": "rollup", "schedule": "0 3 * * *"}}
    runs: list[str] = []

    @app.task(name="rollup", idempotent=True, bind=True)
    def rollup(self: Any) -> None:
        runs.append(self.request.id)

    body = export(app, fmt)["nightly"]["input"].encode()
    app.ensure_queue("default")
    ids = [message_id(i) if message_id else None for i in range(ticks)]
    app.broker.send("default", [OutgoingMessage(body=body, message_id=m) for m in ids])
    with start_worker(app, ["default"], concurrency=1, poll_seconds=1):
        wait_for(lambda: len(runs) == ticks, timeout=30, message="every tick ran")
    assert len(set(runs)) == ticks and all(r.startswith("beat-nightly-") for r in runs), runs
    return runs
