"""The result store is inside the signing boundary (issue 26, finding 4).

What the store keeps for later sends (a chord's body, the header results, an idempotent task's
stored result) is sealed with the signing keys; a worker with ``signing_keys`` sends nothing
from a copy that was changed in the store. On ``memory://`` and on Redis.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloudq import App, chord
from cloudq.envelope import decode, verify
from cloudq.outcome import Ack
from cloudq.results.base import State
from cloudq.storeseal import SEAL_KEY, VALUE_KEY
from cloudq.testing import process_one

KEYS = ["k1"]
Edit = Callable[[Any], Any]


class Store:
    """Reach into one backend's raw chord records, as someone with write access to it could."""

    def __init__(self, app: App, kind: str) -> None:
        self.app, self.kind = app, kind
        self.backend: Any = app.backend

    def edit_body(self, chord_id: str, edit: Edit) -> None:
        if self.kind == "memory":
            record = self.backend._chords[chord_id]
            record.body = _edit_inside(record.body, edit)
            return
        key = f"{self.backend.prefix}:chord:{chord_id}"
        body = json.loads(self.backend._client.hget(key, "body"))
        self.backend._client.hset(key, "body", json.dumps(_edit_inside(body, edit)))

    def edit_part(self, chord_id: str, index: int, edit: Edit) -> None:
        if self.kind == "memory":
            results = self.backend._chords[chord_id].results
            results[index] = _edit_inside(results[index], edit)
            return
        key = f"{self.backend.prefix}:chord:{chord_id}:results"
        value = json.loads(self.backend._client.hget(key, str(index)))
        self.backend._client.hset(key, str(index), json.dumps(_edit_inside(value, edit)))


def _edit_inside(stored: Any, edit: Edit) -> Any:
    """Change the value, leaving a seal (if there is one) as it was."""
    if isinstance(stored, dict) and SEAL_KEY in stored:
        return {**stored, VALUE_KEY: edit(stored[VALUE_KEY])}
    return edit(stored)


@pytest.fixture(params=["memory", "redis"])
def stack(request: pytest.FixtureRequest) -> Iterator[Store]:
    name = uuid.uuid4().hex
    if request.param == "redis":
        backend = f"{request.getfixturevalue('redis_url')}?prefix=cloudq-{name}"
    else:
        backend = f"memory://{name}"
    app = App("store", broker_url=f"memory://{name}", result_backend=backend, signing_keys=KEYS)

    @app.task(name="store.echo")
    def echo(value: Any) -> Any:
        return value

    @app.task(name="store.collect")
    def collect(values: list[Any]) -> list[Any]:
        return values

    @app.task(name="store.fail", max_retries=0)
    def fail(value: Any) -> None:
        raise ValueError("header fails")

    @app.task(name="store.alert")
    def alert(failed_id: str) -> str:
        return failed_id

    @app.task(name="store.chained", idempotent=True)
    def chained(value: int) -> int:
        return value

    yield Store(app, request.param)
    app.close()


def start(app: App, header: list[Any], body: Any) -> tuple[str, str]:
    """Start a chord; its id (from a header envelope on the queue) and the body's task id."""
    result = chord(header)(body)
    got = app.broker.receive("default", 10, 0, 30)
    chord_id = decode(got[0].body).chord_id
    app.broker.release(got, 0)
    assert chord_id is not None
    return chord_id, result.id


def run_all(app: App) -> list[str]:
    """Run everything due; the names of the tasks that ran, each one verified as signed."""
    ran = []
    for _ in range(20):
        got = app.broker.receive("default", 1, 0, 30)
        if not got:
            return ran
        env = decode(got[0].body)
        verify(env, KEYS)
        ran.append(f"{env.task}{env.args}")
        process_one_delivery(app, got[0])
    raise AssertionError(f"still running after {ran}")


def test_a_chord_body_changed_in_the_store_is_not_sent(stack: Store) -> None:
    app = stack.app
    echo, collect = app.tasks["store.echo"], app.tasks["store.collect"]
    chord_id, body_id = start(app, [echo.s(1), echo.s(2)], collect.s())

    def to_evil(body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "task": "store.echo"}  # another task gets the results

    stack.edit_body(chord_id, to_evil)
    ran = run_all(app)

    assert sorted(ran) == ["store.echo[1]", "store.echo[2]"], "the changed body was sent"
    assert app.backend is not None
    record = app.backend.get(body_id)
    assert record is not None and record.state == State.FAILURE
    assert record.error is not None and "stored chord-body" in record.error.message


def test_a_header_result_changed_in_the_store_fails_the_body(stack: Store) -> None:
    app = stack.app
    echo, collect, alert = (app.tasks[f"store.{n}"] for n in ("echo", "collect", "alert"))
    body = collect.s()
    body.link_error(alert.s().set(task_id="the-alert"))
    chord_id, body_id = start(app, [echo.s(1), echo.s(2)], body)
    assert process_one(app) is not None  # one header task done (either)
    [index] = _done_indexes(stack, chord_id)
    stack.edit_part(chord_id, index, lambda value: "evil")

    ran = run_all(app)

    assert not any(r.startswith("store.collect") for r in ran), ran
    assert app.backend is not None
    record = app.backend.get(body_id)
    assert record is not None and record.state == State.FAILURE
    alerted = app.backend.get("the-alert")
    assert alerted is not None and alerted.result == body_id, "the verified body's errback ran"


def _done_indexes(stack: Store, chord_id: str) -> set[int]:
    if stack.kind == "memory":
        return set(stack.backend._chords[chord_id].results)
    key = f"{stack.backend.prefix}:chord:{chord_id}:results"
    return {int(k) for k in stack.backend._client.hkeys(key)}


def test_error_callbacks_added_to_a_stored_body_are_not_sent(stack: Store) -> None:
    app = stack.app
    fail, collect, alert = (app.tasks[f"store.{n}"] for n in ("fail", "collect", "alert"))
    chord_id, _ = start(app, [fail.s(1)], collect.s())
    planted = alert.s().set(task_id="planted").model_dump(mode="json")
    stack.edit_body(chord_id, lambda body: {**body, "errlinks": [planted]})

    ran = run_all(app)

    assert ran == ["store.fail[1]"], "an error callback planted in the store was sent"


def test_links_are_not_sent_again_from_a_result_changed_in_the_store(stack: Store) -> None:
    """An idempotent task's duplicate re-fires its links from the stored SUCCESS record."""
    app = stack.app
    chained, echo = app.tasks["store.chained"], app.tasks["store.echo"]
    sig = chained.s(7)
    sig.link(echo.s())
    sent = sig.delay()
    [delivery] = app.broker.receive("default", 1, 0, 30)
    assert process_one_delivery(app, delivery)
    assert app.backend is not None
    record = app.backend.get(sent.id)
    assert record is not None and record.state == State.SUCCESS
    app.backend.store(record.model_copy(update={"result": 666}), None)  # seal kept as it was

    from cloudq.execute import execute

    outcome = execute(delivery, app)  # the same message, delivered again

    assert not (isinstance(outcome, Ack) and outcome.value == 666), "re-fired a changed result"


def process_one_delivery(app: App, delivery: Any) -> bool:
    from cloudq.execute import execute
    from cloudq.settle import settle

    outcome = execute(delivery, app)
    settle(app, delivery, outcome)
    return isinstance(outcome, Ack)
