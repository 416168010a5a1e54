"""A chain follow-up too big to send fails like one that cannot be built (issue 26, finding 4).

Raising out of settle left the parent's message to run again on every delivery.
"""

from __future__ import annotations

import uuid

from cloudq import App
from cloudq.adapters.base import dead_letter_queue_name
from cloudq.results.base import State
from cloudq.testing import process_one


def make_app() -> App:
    name = uuid.uuid4().hex
    app = App(
        "follow",
        broker_url=f"memory://{name}?max_message_bytes=4000",
        result_backend=f"memory://{name}",
    )

    @app.task(name="follow.big")
    def big(n: int) -> str:
        return "x" * n

    @app.task(name="follow.echo")
    def echo(value: str) -> str:
        return value

    @app.task(name="follow.alert")
    def alert(failed_id: str) -> str:
        return failed_id

    return app


def test_a_follow_up_over_the_size_limit_fails_and_the_parent_is_acked() -> None:
    app = make_app()
    big, echo, alert = (app.tasks[f"follow.{n}"] for n in ("big", "echo", "alert"))
    too_big = echo.s().set(task_id="big-link")
    too_big.link_error(alert.s().set(task_id="the-alert"))
    parent = big.s(10_000)
    parent.link(too_big)
    sent = parent.delay()

    outcome = process_one(app)  # raised MessageTooLarge before the fix
    assert outcome is not None
    stats = app.broker.stats("default")
    assert (stats.in_flight, stats.dead_lettered) == (0, 0), "the parent is acked, not retried"
    assert app.backend is not None
    parent_record = app.backend.get(sent.id)
    assert parent_record is not None and parent_record.state == State.SUCCESS
    failed = app.backend.get("big-link")
    assert failed is not None and failed.state == State.FAILURE
    assert failed.error is not None and failed.error.type == "cloudq.errors.MessageTooLarge"

    # The errback of the link that cannot be sent is sent, with the link's id, and nothing else.
    ran = [process_one(app), process_one(app)]
    assert ran[0] is not None and ran[1] is None, "only the errback was sent"
    alerted = app.backend.get("the-alert")
    assert alerted is not None and alerted.result == "big-link"
    assert app.broker.stats(dead_letter_queue_name("default")).visible == 0
    app.close()
