"""The canvas end to end on moto SQS with Redis results, through a real ``cloudq worker``
subprocess: Celery's canvas guide examples, the built-in hops (a group after a task, map) and
failure propagation (a chord header failure reaches ``get()`` as ChordError)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudq import chain, chord, group
from cloudq.errors import ChordError
from tests.compat import canvas_app
from tests.integration.stack import Stack, new_prefix
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP_REF = "tests.compat.canvas_app"
TIMEOUT = 30


@pytest.fixture
def stack(sqs_env: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    prefix = new_prefix()
    backend_url = f"{redis_url}?prefix=cloudq-{prefix}"
    with Stack(
        tmp_path, f"sqs://?prefix={prefix}", backend_url, prefix, canvas_app.make_app, APP_REF
    ) as s:
        producer = s.producer()
        producer.ensure_queue("default")
        env = s.env()
        env["CANVAS_MARKERS"] = str(tmp_path)
        s.worker(["default"], concurrency=4, env=env).wait_ready()
        yield s


def test_chain_group_and_chord_of_the_guide(stack: Stack) -> None:
    """chain(add.s(4, 4) | mul.s(8)), group(...)(), (group(...) | tsum.s())()."""
    app = stack.apps[0]
    add, mul, tsum = app.tasks["canvas.add"], app.tasks["canvas.mul"], app.tasks["canvas.tsum"]
    res = chain(add.s(4, 4) | mul.s(8), mul.s(10))()
    assert res.get(timeout=TIMEOUT) == 640
    assert res.parent.get(timeout=TIMEOUT) == 64
    assert group(add.s(i, i) for i in range(10))().get(timeout=TIMEOUT) == [
        2 * i for i in range(10)
    ]
    assert (group(add.s(i, i) for i in range(10)) | tsum.s())().get(timeout=TIMEOUT) == 90


def test_a_group_after_a_task_and_a_chord_after_it(stack: Stack) -> None:
    """Sent by the worker's built-in cloudq.group task: add | group | tsum | group."""
    app = stack.apps[0]
    add, tsum = app.tasks["canvas.add"], app.tasks["canvas.tsum"]
    c = add.si(1, 0) | group(add.s(1), add.s(1)) | tsum.s() | add.s(1) | group(add.s(1), add.s(2))
    assert c().get(timeout=TIMEOUT) == [6, 7]


def test_map_starmap_and_chunks(stack: Stack) -> None:
    app = stack.apps[0]
    add, tsum = app.tasks["canvas.add"], app.tasks["canvas.tsum"]
    assert ~tsum.map([list(range(10)), list(range(100))]) == [45, 4950]
    assert ~add.starmap(zip(range(5), range(5), strict=True)) == [0, 2, 4, 6, 8]
    res = add.chunks(zip(range(20), range(20), strict=True), 10)()
    assert res.get(timeout=TIMEOUT) == [[2 * i for i in range(10)], [2 * i for i in range(10, 20)]]


def test_a_chord_header_failure_reaches_get_and_the_errback(stack: Stack) -> None:
    """The guide's chord error handling, with on_error(on_chord_error.s()) in Celery's form."""
    app = stack.apps[0]
    add, tsum = app.tasks["canvas.add"], app.tasks["canvas.tsum"]
    body = tsum.s().on_error(app.tasks["canvas.log_error"].s())
    res = chord([add.s(4, 4), app.tasks["canvas.raising_task"].s(), add.s(8, 8)], body)()
    with pytest.raises(ChordError, match=r"Dependency .* raised ValueError"):
        res.get(timeout=TIMEOUT)
    wait_for(lambda: any(stack.tmp.iterdir()), 15, "errback marker", stack.logs)


def test_a_failed_chain_link_reaches_get(stack: Stack) -> None:
    app = stack.apps[0]
    add = app.tasks["canvas.add"]
    res = chain(add.s(1, 1), app.tasks["canvas.raising_task"].si(), add.s(1), add.s(1))()
    with pytest.raises(ValueError, match="something something"):
        res.get(timeout=TIMEOUT)
    with pytest.raises(ValueError, match="something something"):
        res.parent.get(timeout=TIMEOUT)
