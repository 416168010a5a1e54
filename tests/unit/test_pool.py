"""The processes pool's executor on its own: what crosses the pipe to the child."""

from __future__ import annotations

import threading

from cloudq.adapters.base import Delivery
from cloudq.outcome import Ack
from cloudq.pool import ProcessExecutor
from tests.apps import pool_app


def test_a_delivery_whose_handle_cannot_be_pickled_still_runs_in_the_child() -> None:
    """Regression: the Service Bus adapter's handle holds its receiver and locks. Sent whole to
    the child, it failed to pickle, so on Service Bus ``-P processes`` ran nothing: every
    message was abandoned until the broker dead-lettered it (MaxDeliveryCountExceeded)."""
    envelope = pool_app.pid.envelope([], {}, queue="default")
    handle = {"lock": threading.Lock()}  # stands in for the adapter's own token
    delivery = Delivery("default", envelope.encode(), envelope.id, 1, handle=handle)
    executor = ProcessExecutor(pool_app.app, "tests.apps.pool_app:app", None)
    try:
        outcome = executor.run(delivery)
    finally:
        executor.close()
    assert isinstance(outcome, Ack), outcome
    assert delivery.handle is handle, "the parent keeps the handle to settle the message"
