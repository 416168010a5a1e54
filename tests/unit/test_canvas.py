"""Canvas on the memory broker: chains, groups, chords, error callbacks, duplicates."""

from __future__ import annotations

import uuid

import pytest

from cloudq import App, ConfigurationError, chain, chord, group
from cloudq.errors import TaskArgumentError
from cloudq.outcome import Ack
from cloudq.testing import FakeClock, process_one, start_worker


def make_app(backend: bool = True) -> App:
    name = uuid.uuid4().hex
    return App(
        "canvas",
        broker=f"memory://{name}",
        backend=f"memory://{name}" if backend else None,
        clock=FakeClock(),
    )


def register(app: App) -> dict[str, list[object]]:
    log: dict[str, list[object]] = {"failed": [], "summed": []}

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="mul")
    def mul(a: int, b: int) -> int:
        return a * b

    @app.task(name="boom")
    def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @app.task(name="on_error")
    def on_error(task_id: str) -> None:
        log["failed"].append(task_id)

    @app.task(name="tsum")
    def tsum(values: list[int]) -> int:
        log["summed"].append(values)
        return sum(values)

    return log


def drain(app: App, limit: int = 100) -> int:
    n = 0
    while process_one(app) is not None:
        n += 1
        assert n < limit
    return n


def test_chain_passes_results_and_needs_no_backend() -> None:
    app = make_app(backend=False)
    register(app)
    add, mul = app.tasks["add"], app.tasks["mul"]
    seen: list[int] = []
    app.task(name="keep")(lambda x: seen.append(x))  # noqa: PLW0108 - a task needs a signature
    chain(add.s(4, 4), mul.s(8), app.tasks["keep"].s()).delay()
    assert drain(app) == 3
    assert seen == [64]


def test_chain_result_and_pipe_syntax() -> None:
    app = make_app()
    register(app)
    result = (app.tasks["add"].s(1, 2) | app.tasks["mul"].s(10)).apply_async()
    drain(app)
    assert result.get(timeout=1) == 30


def test_immutable_signature_ignores_the_parent_result() -> None:
    app = make_app()
    register(app)
    result = chain(app.tasks["add"].s(1, 1), app.tasks["add"].si(5, 5)).delay()
    drain(app)
    assert result.get(timeout=1) == 10


def test_failure_stops_the_chain_and_runs_error_callbacks() -> None:
    app = make_app()
    log = register(app)
    c = chain(app.tasks["add"].s(1, 1), app.tasks["boom"].s(), app.tasks["add"].s(100))
    c.link_error(app.tasks["on_error"].s())
    result = c.apply_async()
    drain(app)
    assert len(log["failed"]) == 1
    assert result.state == "FAILURE", "the task after the failure gets the failure, unrun"
    with pytest.raises(ValueError, match="boom 2"):
        result.get(timeout=0)
    assert app.broker.stats("default").dead_lettered == 1


def test_group_sends_in_batches_and_collects_in_order() -> None:
    app = make_app()
    register(app)
    calls: list[int] = []
    send = app.broker.send

    def counting_send(queue, messages):  # type: ignore[no-untyped-def]
        calls.append(len(messages))
        return send(queue, messages)

    app.broker.send = counting_send  # type: ignore[method-assign]
    result = group(app.tasks["add"].s(i, i) for i in range(25)).apply_async()
    assert calls == [10, 10, 5]
    assert result.completed_count() == 0 and not result.ready()
    drain(app)
    assert result.get(timeout=1) == [2 * i for i in range(25)]
    assert result.ready() and result.completed_count() == 25


def test_chord_body_runs_once_with_results_in_order_despite_duplicates() -> None:
    app = make_app()
    log = register(app)
    result = chord(app.tasks["mul"].s(i, i) for i in range(6))(app.tasks["tsum"].s())
    # Deliver every header task twice (as a crash redelivery would), out of order.
    deliveries = app.broker.receive("default", 10, 0, 30)
    from cloudq.execute import execute
    from cloudq.settle import settle

    for d in reversed(deliveries):
        settle(app, d, execute(d, app))
    for d in deliveries:  # duplicates: same bodies again
        outcome = execute(d, app)
        assert isinstance(outcome, Ack)
        settle(app, d, outcome)
    drain(app)
    assert log["summed"] == [[i * i for i in range(6)]]
    assert result.get(timeout=1) == sum(i * i for i in range(6))


def test_chord_header_failure_runs_the_errback_once() -> None:
    app = make_app()
    log = register(app)
    body = app.tasks["tsum"].s()
    body.link_error(app.tasks["on_error"].s())
    chord([app.tasks["boom"].s(1), app.tasks["boom"].s(2), app.tasks["add"].s(1, 1)])(body)
    drain(app)
    assert len(log["failed"]) == 1
    assert log["summed"] == []


def test_chord_without_backend_is_a_clear_error() -> None:
    app = make_app(backend=False)
    register(app)
    with pytest.raises(ConfigurationError, match="chords need a result backend"):
        chord([app.tasks["add"].s(1, 1)])(app.tasks["tsum"].s())
    assert app.broker.stats("default").visible == 0


def test_signature_set_and_unknown_options() -> None:
    app = make_app()
    register(app)
    sig = app.tasks["add"].s(1, 2).set(queue="low", countdown=5)
    sig.delay()
    assert app.broker.stats("low").delayed == 1
    with pytest.raises(ConfigurationError, match="unknown signature option"):
        sig.set(colour="red")


def test_signatures_are_json() -> None:
    app = make_app()
    register(app)
    sig = app.tasks["add"].s(1, 2)
    sig.link(app.tasks["mul"].s(3))
    data = sig.model_dump_json()
    assert '"task":"add"' in data and '"links"' in data


def test_chord_with_a_real_worker() -> None:
    name = uuid.uuid4().hex
    app = App("canvas", broker=f"memory://{name}", backend=f"memory://{name}")
    register(app)
    with start_worker(app, ["default"], concurrency=4):
        result = chord(app.tasks["add"].s(i, 1) for i in range(50))(app.tasks["tsum"].s())
        assert result.get(timeout=20) == sum(i + 1 for i in range(50))


def test_a_link_that_cannot_take_the_result_fails_there_and_the_parent_is_not_rerun() -> None:
    app = make_app()
    log = register(app)
    head = app.tasks["add"].s(1, 1).set(task_id="head")
    link = app.tasks["tsum"].s().set(task_id="link")  # takes a list, gets an int
    c = chain(head, link, app.tasks["add"].s(100))
    c.link_error(app.tasks["on_error"].s())
    last = c.apply_async()
    assert drain(app) == 2, "the parent once, its error callback once: no redelivery loop"
    assert app.AsyncResult("head").get(timeout=0) == 2
    assert app.AsyncResult("link").state == "FAILURE"
    with pytest.raises(TaskArgumentError, match="tsum"):  # cloudq's own class, rebuilt
        app.AsyncResult("link").get(timeout=0)
    assert log["failed"] == ["link"], "the chain's error callback got the failed link's id"
    assert last.state == "FAILURE", "nothing after the failed link runs: it gets its failure"
    with pytest.raises(TaskArgumentError, match="tsum"):  # the failing link's error
        last.get(timeout=0)
    assert app.broker.stats("default").visible == 0


def test_a_link_to_a_task_this_worker_lacks_fails_there() -> None:
    producer = make_app()
    register(producer)

    @producer.task(name="elsewhere")
    def elsewhere(x: int) -> int:
        return x

    worker = App(
        "canvas",
        broker=producer.conf.broker_url,
        backend=producer.conf.result_backend,
        clock=producer.clock,
    )
    register(worker)  # no "elsewhere"
    last = chain(producer.tasks["add"].s(2, 3), producer.tasks["elsewhere"].s()).apply_async()
    assert drain(worker) == 1
    assert last.state == "FAILURE"
    with pytest.raises(ConfigurationError, match="elsewhere"):  # cloudq's own class, rebuilt
        last.get(timeout=0)
