"""SQS specifics through the whole stack: delay hops past the native cap, and FIFO queues."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from cloudq import App, ConfigurationError
from cloudq.testing import start_worker
from tests.integration.scenarios import fifo_group_order_retry_and_countdown

pytestmark = [pytest.mark.integration, pytest.mark.sqs_servers]


def make_app(**options: str) -> App:
    query = "&".join(
        f"{k}={v}" for k, v in {"prefix": f"f{uuid.uuid4().hex[:8]}-", **options}.items()
    )
    return App(
        "fifo",
        broker=f"sqs://?{query}",
        backend=f"memory://{uuid.uuid4().hex}",
        queue_lease_seconds=5,
    )


def test_countdown_past_the_native_cap_hops_and_is_never_early(
    sqs_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(max_delay_seconds="2")
    ran: list[float] = []

    @app.task(name="later")
    def later() -> None:
        ran.append(time.monotonic())

    caplog.set_level(logging.DEBUG, logger="cloudq.settle")
    with start_worker(app, ["default"], poll_seconds=1):
        sent = time.monotonic()
        result = later.apply_async(countdown=5)
        result.get(timeout=20)
    assert ran[0] - sent >= 5.0 - 0.05
    hops = [r for r in caplog.records if "delay hop" in r.getMessage()]
    # Two hops when every receive is on time; one when the first receive came a second late
    # (a loaded machine), since the rest of the wait then fits the cap. Never none.
    assert hops, "a 5 s countdown under a 2 s cap must hop"
    assert len(ran) == 1


def test_fifo_group_order_dedup_retry_and_countdown(sqs_env: str) -> None:
    fifo_group_order_retry_and_countdown(make_app(), resend_first=True)


def test_fifo_group_on_a_standard_queue_is_refused(sqs_env: str) -> None:
    app = make_app()

    @app.task(name="std", fifo_group="g")
    def std() -> None: ...

    app.ensure_queue("default")
    with pytest.raises(ConfigurationError, match="standard queue"):
        std.delay()
    assert app.broker.stats("default").visible == 0
