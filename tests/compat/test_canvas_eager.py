"""The canvas under ``task_always_eager`` (Celery's test mode): chains, groups and chords run
here, in the caller, as ``apply()`` runs a task; nothing is sent."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App, chain, chord, group


def make_app(propagates: bool = False) -> App:
    name = uuid.uuid4().hex
    app = App(
        "eager",
        broker=f"memory://{name}",
        backend=f"memory://{name}",
        task_always_eager=True,
        task_eager_propagates=propagates,
    )

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="tsum")
    def tsum(nums: list[int]) -> int:
        return sum(nums)

    @app.task(name="fail")
    def fail(x: int) -> int:
        raise ValueError(f"fail {x}")

    return app


def test_chain_group_chord_and_map_run_here() -> None:
    app = make_app()
    add, mul, tsum = app.tasks["add"], app.tasks["mul"], app.tasks["tsum"]
    assert chain(add.s(4, 4) | mul.s(8))().get() == 64
    assert add.s(2).delay(2).get() == 4
    assert group(add.s(i, i) for i in range(4))().get() == [0, 2, 4, 6]
    assert chord(add.s(i, i) for i in range(4))(tsum.s()).get() == 12
    assert (add.s(1, 1) | group(add.s(1), mul.s(3)) | tsum.s())().get() == 9
    assert ~tsum.map([[1, 2], [3]]) == [3, 3]
    assert app.broker.stats("default").visible == 0, "nothing was sent"


def test_a_failure_stops_the_chain_and_get_raises() -> None:
    app = make_app()
    add, fail = app.tasks["add"], app.tasks["fail"]
    with pytest.raises(ValueError, match="fail 2"):
        chain(add.s(1, 1), fail.s(), add.s(1))().get()


def test_eager_propagates_raises_at_the_call() -> None:
    app = make_app(propagates=True)
    with pytest.raises(ValueError, match="fail 1"):
        chain(app.tasks["fail"].s(1), app.tasks["add"].s(1))()
