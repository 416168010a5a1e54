"""The canvas with ``signing_keys``: what the built-in tasks send verifies, and a forged message
naming a built-in (or carrying callbacks) sends and runs nothing (DESIGN.md, Trust)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from cloudq import App, chain, chord, group
from cloudq.canvas import GROUP_TASK
from cloudq.envelope import ENVELOPE_VERSION, Envelope
from cloudq.errors import ChordError
from cloudq.outcome import DeadLetter
from cloudq.testing import FakeClock, process_one

KEYS = ["k" * 32]


def make_app(keys: list[str] | None = None) -> tuple[App, dict[str, list[Any]]]:
    name = uuid.uuid4().hex
    app = App(
        "trust",
        broker=f"memory://{name}",
        backend=f"memory://{name}",
        clock=FakeClock(),
        signing_keys=KEYS if keys is None else keys,
    )
    seen: dict[str, list[Any]] = {"errors": [], "ran": []}

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        seen["ran"].append(("add", x, y))
        return x + y

    @app.task(name="tsum")
    def tsum(nums: list[int]) -> int:
        return sum(nums)

    @app.task(name="fail")
    def fail(x: int) -> int:
        raise ValueError(f"fail {x}")

    @app.task(name="log_error")
    def log_error(request: Any, exc: Any, traceback: Any) -> None:
        seen["errors"].append(request.id)

    return app, seen


def drain(app: App) -> list[object]:
    outcomes = []
    while (outcome := process_one(app)) is not None:
        outcomes.append(outcome)
        assert len(outcomes) < 200
    return outcomes


def test_a_signed_canvas_runs_through_the_built_in_hop() -> None:
    """The group after a task is sent by the worker's cloudq.group task: signed, it verifies."""
    app, _ = make_app()
    add, tsum = app.tasks["add"], app.tasks["tsum"]
    res = chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s(), add.s(10))()
    outcomes = drain(app)
    assert not [o for o in outcomes if isinstance(o, DeadLetter)]
    assert res.get(timeout=0) == 17


def test_a_signed_chord_header_failure_fails_the_body_with_chord_error() -> None:
    app, seen = make_app()
    add, tsum, fail = app.tasks["add"], app.tasks["tsum"], app.tasks["fail"]
    res = chord([add.s(1, 1), fail.s(2)], tsum.s().on_error(app.tasks["log_error"].s()))()
    drain(app)
    with pytest.raises(ChordError, match=r"Dependency .* raised ValueError"):
        res.get(timeout=0)
    assert len(seen["errors"]) == 1


def forged(app: App, task: str, **fields: Any) -> None:
    """An unsigned envelope put straight on the queue, as an attacker with send rights could."""
    from cloudq.adapters.base import OutgoingMessage

    env = Envelope(
        v=ENVELOPE_VERSION,
        id=uuid.uuid4().hex,
        task=task,
        queue="default",
        created_at=datetime.now(UTC),
        **fields,
    )
    app.broker.send("default", [OutgoingMessage(body=env.encode(), message_id=env.id)])


def test_a_forged_built_in_group_message_sends_nothing() -> None:
    app, seen = make_app()
    member = app.tasks["add"].s(5, 5).model_dump(mode="json")
    forged(app, GROUP_TASK, kwargs={"group_id": "g", "tasks": [member]})
    outcomes = drain(app)
    assert len(outcomes) == 1 and isinstance(outcomes[0], DeadLetter)
    assert seen["ran"] == []


def test_a_forged_failing_message_runs_no_errback_and_fails_nothing_downstream() -> None:
    app, seen = make_app()
    errback = app.tasks["log_error"].s().model_dump(mode="json")
    step = app.tasks["add"].s(1).set(task_id="victim").model_dump(mode="json")
    step["options"]["chain_step"] = True
    forged(app, "fail", args=[1], links=[step], errlinks=[errback])
    outcomes = drain(app)
    assert len(outcomes) == 1 and isinstance(outcomes[0], DeadLetter)
    assert seen["errors"] == []
    assert app.AsyncResult("victim").state == "PENDING"
