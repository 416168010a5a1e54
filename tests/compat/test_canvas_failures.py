"""Failure propagation for a chain step that can never be sent (the parent's result does not fit
its arguments): what follows it fails too, so ``get()`` raises instead of waiting on PENDING."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App, chain, chord
from cloudq.errors import ChordError, TaskArgumentError
from cloudq.testing import FakeClock, process_one


def make_app() -> App:
    name = uuid.uuid4().hex
    app = App("fail", broker=f"memory://{name}", backend=f"memory://{name}", clock=FakeClock())

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tsum")
    def tsum(nums: list[int]) -> int:
        return sum(nums)

    return app


def drain(app: App) -> None:
    for _ in range(100):
        if process_one(app) is None:
            return
    raise AssertionError("the queue did not drain")


def test_the_steps_after_an_unsendable_link_fail_with_its_error() -> None:
    app = make_app()
    add, tsum = app.tasks["add"], app.tasks["tsum"]
    last = chain(add.s(1, 1), tsum.s(), add.s(100))()  # tsum takes a list, gets an int
    drain(app)
    with pytest.raises(TaskArgumentError, match="tsum"):
        last.get(timeout=0)


def test_an_unsendable_chord_header_step_fails_the_body_with_chord_error() -> None:
    app = make_app()
    add, tsum = app.tasks["add"], app.tasks["tsum"]
    res = chord([add.s(1, 1), chain(add.s(1, 1), tsum.s())], tsum.s())()
    drain(app)
    with pytest.raises(ChordError, match="Dependency"):
        res.get(timeout=0)
