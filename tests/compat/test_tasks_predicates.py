"""Issue 24: Celery's predicates. ``Ignore`` acknowledges and leaves the record as it is;
``Reject(requeue=False)`` dead-letters with the reason; ``Reject(requeue=True)`` puts the
message back, a bounded number of times."""

from __future__ import annotations

import json

import pytest

from cloudq import App
from cloudq.envelope import HEADER_DEAD_LETTER_REASON
from cloudq.exceptions import Ignore, Reject
from cloudq.outcome import Ack, DeadLetter, Defer
from cloudq.request import REQUEUE_HEADER
from cloudq.testing import process_one


def dead_letters(app: App, queue: str = "default") -> list[dict[str, object]]:
    got = app.broker.receive(f"{queue}-dlq", 10, 0, 30)
    return [json.loads(d.body) for d in got]


def test_ignore_acks_and_changes_no_state(cloudq_app: App) -> None:
    runs: list[int] = []

    @cloudq_app.task(bind=True)
    def skip(self) -> None:  # type: ignore[no-untyped-def]
        runs.append(1)
        self.update_state(state="PROGRESS", meta={"seen": 1})
        raise Ignore()

    result = skip.delay()
    outcome = process_one(cloudq_app)
    assert isinstance(outcome, Ack) and outcome.result is None
    assert result.state == "PROGRESS"  # what the task wrote last, not FAILURE
    assert process_one(cloudq_app) is None  # acknowledged: not coming back
    assert dead_letters(cloudq_app) == [] and runs == [1]


def test_reject_without_requeue_dead_letters_with_the_reason(cloudq_app: App) -> None:
    @cloudq_app.task(max_retries=5)
    def refuse(row: int) -> None:
        raise Reject(f"row {row} is malformed", requeue=False)

    result = refuse.delay(7)
    outcome = process_one(cloudq_app)
    assert isinstance(outcome, DeadLetter)
    assert "row 7 is malformed" in outcome.reason
    [dead] = dead_letters(cloudq_app)
    headers = dead["headers"]
    assert isinstance(headers, dict)
    assert "row 7 is malformed" in headers[HEADER_DEAD_LETTER_REASON]
    assert dead.get("attempt", 1) == 1  # not retried: a rejection is not an error
    assert result.state == "FAILURE"  # as Celery 5.6: waiting on it must not hang
    with pytest.raises(Exception, match="malformed"):
        result.get(timeout=1)


def test_reject_with_requeue_comes_back_then_is_dead_lettered(cloudq_app: App) -> None:
    cloudq_app.conf.queue_max_receive_count = 3
    seen: list[int] = []

    @cloudq_app.task(bind=True)
    def later(self) -> None:  # type: ignore[no-untyped-def]
        seen.append(self.request.retries)
        raise Reject("not yet", requeue=True)

    later.delay()
    outcomes = [process_one(cloudq_app) for _ in range(4)]
    assert [type(o) for o in outcomes] == [Defer, Defer, Defer, DeadLetter]
    assert seen == [0, 0, 0, 0]  # a requeue is not a retry
    last = outcomes[-1]
    assert isinstance(last, DeadLetter) and "requeued 3 times" in last.reason
    assert len(dead_letters(cloudq_app)) == 1


def test_a_forged_requeue_count_cannot_extend_the_bound(cloudq_app: App) -> None:
    """The count travels in a header anyone sending a message can set: a negative or
    unparsable one counts as none, so the requeues stay bounded."""
    cloudq_app.conf.queue_max_receive_count = 2

    @cloudq_app.task
    def later() -> None:
        raise Reject("not yet", requeue=True)

    for forged in ("-100000", "x"):
        later.apply_async(headers={REQUEUE_HEADER: forged})
        outcomes = [process_one(cloudq_app) for _ in range(3)]
        assert [type(o) for o in outcomes] == [Defer, Defer, DeadLetter], forged
