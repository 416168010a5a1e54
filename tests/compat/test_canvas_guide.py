"""Celery's canvas guide (``docs/userguide/canvas.rst``), example by example, changed only in the
import and the broker URL (issue 24): the guide's ``proj.tasks`` on ``memory://``, a worker
thread running them. Each test names the guide's section."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import pytest

from cloudq import chain, chord, group, signature
from cloudq.errors import ChordError, ConfigurationError
from tests.compat.canvas_fixture import TIMEOUT, proj

__all__ = ["proj"]


def wait_for(check: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_signatures_by_name_and_by_task(proj: ModuleType) -> None:
    """Signatures: signature('tasks.add', args=(2, 2), countdown=10), add.signature(...)."""
    add = proj.add
    s = signature("proj.tasks.add", args=(2, 2), countdown=10)
    assert (s.task, s.args, s.options) == ("proj.tasks.add", [2, 2], {"countdown": 10})
    s = add.signature((2, 2), countdown=10)
    assert (s.task, s.args, s.kwargs, s.options) == (add.name, [2, 2], {}, {"countdown": 10})
    s = add.s(2, 2, debug=True)
    assert (s.args, s.kwargs) == ([2, 2], {"debug": True})
    s = add.signature((2, 2), {"debug": True}, countdown=10)
    assert (s.args, s.kwargs, s.options) == ([2, 2], {"debug": True}, {"countdown": 10})


def test_calling_a_signature_runs_it_here(proj: ModuleType) -> None:
    """Calling the API: add(2, 2), add.s(2, 2)() run in the current process."""
    assert proj.add(2, 2) == 4
    assert proj.add.s(2, 2)() == 4


def test_delay_and_apply_async_of_a_signature(proj: ModuleType) -> None:
    """add.s(2, 2).delay(), add.signature((2, 2), countdown=1).apply_async()."""
    assert proj.add.delay(2, 2).get(timeout=TIMEOUT) == 4
    assert proj.add.s(2, 2).delay().get(timeout=TIMEOUT) == 4
    assert proj.add.apply_async((2, 2), countdown=1).get(timeout=TIMEOUT) == 4
    assert proj.add.signature((2, 2), countdown=1).apply_async().get(timeout=TIMEOUT) == 4


def test_partials(proj: ModuleType) -> None:
    """Partials: partial = add.s(2); partial.delay(4) is add(4, 2)."""
    partial = proj.add.s(2)
    assert partial.delay(4).get(timeout=TIMEOUT) == 6
    assert partial.apply_async((4,)).get(timeout=TIMEOUT) == 6
    s = proj.add.signature((2, 2), countdown=10)
    assert s.apply_async(countdown=1).get(timeout=TIMEOUT) == 4  # options merge, call wins
    assert s.options == {"countdown": 10}


def test_clone_with_partial_args(proj: ModuleType) -> None:
    """Partials: s.clone(args=(4,), kwargs={...}): a copy with the arguments merged."""
    s = proj.add.s(2)
    copy = s.clone(args=(4,))
    assert (copy.args, s.args) == ([4, 2], [2])
    assert copy.delay().get(timeout=TIMEOUT) == 6


def test_immutability(proj: ModuleType) -> None:
    """Immutability: add.apply_async((2, 2), link=reset_buffers.si()); signature(immutable=True)."""
    result = proj.add.apply_async((2, 2), link=proj.reset_buffers.si())
    assert result.get(timeout=TIMEOUT) == 4
    assert proj.add.signature((2, 2), immutable=True).immutable
    res = (proj.add.si(2, 2) | proj.add.si(4, 4) | proj.add.si(8, 8))()
    assert res.get(timeout=TIMEOUT) == 16
    assert res.parent.get(timeout=TIMEOUT) == 8
    assert res.parent.parent.get(timeout=TIMEOUT) == 4


def test_callbacks_with_link(proj: ModuleType) -> None:
    """Callbacks: add.apply_async((2, 2), link=add.s(16)): the callback gets 4, returns 20."""
    callback = proj.add.s(16).freeze()
    result = proj.add.apply_async((2, 2), link=proj.add.s(16).set(task_id=callback.id))
    assert result.get(timeout=TIMEOUT) == 4  # the parent's own result
    assert callback.get(timeout=TIMEOUT) == 20


def test_the_primitives_group(proj: ModuleType) -> None:
    """The Primitives: group(add.s(i, i) for i in range(10))().get()."""
    res = group(proj.add.s(i, i) for i in range(10))()
    assert res.get(timeout=TIMEOUT) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]


def test_the_primitives_chain(proj: ModuleType) -> None:
    """The Primitives: chain(add.s(4, 4) | mul.s(8))().get() (issue 24's TypeError)."""
    assert chain(proj.add.s(4, 4) | proj.mul.s(8))().get(timeout=TIMEOUT) == 64


def test_the_primitives_partial_chain(proj: ModuleType) -> None:
    """The Primitives: g = chain(add.s(4) | mul.s(8)); g(4).get() is (4 + 4) * 8."""
    g = chain(proj.add.s(4) | proj.mul.s(8))
    assert g(4).get(timeout=TIMEOUT) == 64


def test_the_primitives_chain_by_or(proj: ModuleType) -> None:
    """The Primitives: (add.s(4, 4) | mul.s(8))().get()."""
    assert (proj.add.s(4, 4) | proj.mul.s(8))().get(timeout=TIMEOUT) == 64


def test_the_primitives_chord(proj: ModuleType) -> None:
    """The Primitives: chord((add.s(i, i) for i in range(10)), xsum.s())().get() is 90."""
    res = chord((proj.add.s(i, i) for i in range(10)), proj.xsum.s())()
    assert res.get(timeout=TIMEOUT) == 90


def test_the_primitives_group_chained_to_a_task_is_a_chord(proj: ModuleType) -> None:
    """The Primitives: (group(add.s(i, i) for i in range(10)) | xsum.s())().get() is 90."""
    res = (group(proj.add.s(i, i) for i in range(10)) | proj.xsum.s())()
    assert res.get(timeout=TIMEOUT) == 90


def test_the_primitives_task_chained_to_a_group(proj: ModuleType) -> None:
    """The Primitives: a task piped into a group: each member gets the task's result."""
    res = (proj.add.s(2, 2) | group(proj.add.s(1), proj.mul.s(10)))()
    assert res.get(timeout=TIMEOUT) == [5, 40]


def test_the_primitives_link_callback_result(proj: ModuleType) -> None:
    """The Primitives: res = add.apply_async((2, 2), link=mul.s(16)); res.get() is 4."""
    res = proj.add.apply_async((2, 2), link=proj.mul.s(16))
    assert res.get(timeout=TIMEOUT) == 4


def test_the_primitives_chained_partial(proj: ModuleType) -> None:
    """The Primitives: c1 = (add.s(4) | mul.s(8)); c1(16).get() is (16 + 4) * 8."""
    c1 = proj.add.s(4) | proj.mul.s(8)
    assert c1(16).get(timeout=TIMEOUT) == 160


def test_the_primitives_chain_parents(proj: ModuleType) -> None:
    """The Primitives: res = chain(add.s(4, 4), mul.s(8), mul.s(10))(): 640, .parent 64, 8."""
    res = chain(proj.add.s(4, 4), proj.mul.s(8), proj.mul.s(10))()
    assert res.get(timeout=TIMEOUT) == 640
    assert res.parent.get(timeout=TIMEOUT) == 64
    assert res.parent.parent.get(timeout=TIMEOUT) == 8


def test_chains_of_three(proj: ModuleType) -> None:
    """Chains: chain(add.s(2, 2), add.s(4), add.s(8)) and add.s(2, 2) | add.s(4) | add.s(8)."""
    assert chain(proj.add.s(2, 2), proj.add.s(4), proj.add.s(8))().get(timeout=TIMEOUT) == 16
    c = proj.add.s(2, 2) | proj.add.s(4) | proj.add.s(8)
    assert c().get(timeout=TIMEOUT) == 16


def test_linking_signatures(proj: ModuleType) -> None:
    """Chains: s = add.s(2, 2); s.link(mul.s(4)); s.link(log_result.s()): both callbacks run."""
    s = proj.add.s(2, 2)
    first, second = proj.mul.s(4).freeze(), proj.mul.s(10).freeze()
    s.link(proj.mul.s(4).set(task_id=first.id))
    s.link(proj.mul.s(10).set(task_id=second.id))
    assert s.delay().get(timeout=TIMEOUT) == 4
    assert (first.get(timeout=TIMEOUT), second.get(timeout=TIMEOUT)) == (16, 40)


def test_on_error_calls_the_errback_with_request_exc_traceback(proj: ModuleType) -> None:
    """Chains: add.s(2, 2).on_error(log_error.s()).delay(), log_error(request, exc, traceback)."""
    res = proj.fail.s("test").on_error(proj.log_error.s()).delay()
    with pytest.raises(proj.ExpectedException, match="Task expected to fail"):
        res.get(timeout=TIMEOUT)
    wait_for(lambda: proj.ERRORS)
    assert proj.ERRORS[0][0] == res.id and "Task expected to fail" in proj.ERRORS[0][1]


def test_link_error_option(proj: ModuleType) -> None:
    """Chains: add.apply_async((2, 2), link_error=log_error.s()) (the same, spelled out)."""
    res = proj.fail.apply_async(("x",), link_error=proj.log_error.s())
    with pytest.raises(proj.ExpectedException):
        res.get(timeout=TIMEOUT)
    wait_for(lambda: proj.ERRORS)
    assert proj.ERRORS[0][0] == res.id


def test_an_errback_of_one_argument_gets_the_failed_id(proj: ModuleType) -> None:
    """cloudq's own errback form, still: one argument, sent as a task with the failed id."""
    res = proj.fail.apply_async(("x",), link_error=proj.record_failed_id.s())
    wait_for(lambda: proj.ERRORS)
    assert [(res.id, None)] == proj.ERRORS


def test_groups_of_two(proj: ModuleType) -> None:
    """Groups: group(add.s(2, 2), add.s(4, 4)) and group([add.s(2, 2), add.s(4, 4)])."""
    g = group(proj.add.s(2, 2), proj.add.s(4, 4))
    assert g().get(timeout=TIMEOUT) == [4, 8]
    assert group([proj.add.s(2, 2), proj.add.s(4, 4)])().get(timeout=TIMEOUT) == [4, 8]


def test_group_error_handling(proj: ModuleType) -> None:
    """Groups: g = group(fail.s(), fail.s()); g.link_error(log_error.s()): called per failure."""
    g = group(proj.fail.s(), proj.fail.s())
    g.link_error(proj.log_error.s())
    res = g.apply_async()
    wait_for(lambda: len(proj.ERRORS) == 2)
    assert sorted(e[0] for e in proj.ERRORS) == sorted(r.id for r in res.results)


def test_chords(proj: ModuleType) -> None:
    """Chords: callback = tsum.s(); header = [add.s(i, i) for i in range(100)]."""
    callback = proj.tsum.s()
    header = [proj.add.s(i, i) for i in range(100)]
    result = chord(header)(callback)
    assert result.get(timeout=TIMEOUT) == 9900
    assert chord(proj.add.s(i, i) for i in range(100))(proj.tsum.s()).get(timeout=TIMEOUT) == 9900


def test_chord_error_handling(proj: ModuleType) -> None:
    """Chords, error handling: chord([add.s(4, 4), raising_task.s(), add.s(8, 8)]): the body
    fails with ChordError: Dependency <id> raised ValueError('something something')."""
    c = chord([proj.add.s(4, 4), proj.raising_task.s(), proj.add.s(8, 8)], proj.tsum.s())
    result = c()
    with pytest.raises(ChordError, match=r"Dependency .+ raised ValueError"):
        result.get(timeout=TIMEOUT)
    assert "something something" in result.traceback


def test_chord_on_error_callback(proj: ModuleType) -> None:
    """Chords: (group(...) | tsum.s().on_error(on_chord_error.s())).delay()."""
    c = (
        group([proj.add.s(1, 1), proj.raising_task.s()])
        | proj.tsum.s().on_error(proj.on_chord_error.s())
    ).delay()
    with pytest.raises(ChordError):
        c.get(timeout=TIMEOUT)
    wait_for(lambda: proj.ERRORS)
    assert len(proj.ERRORS) == 1 and "something something" in proj.ERRORS[0][1]


def test_map(proj: ModuleType) -> None:
    """Map & Starmap: ~tsum.map([range(10), range(100)]) is [45, 4950]."""
    assert ~proj.tsum.map([list(range(10)), list(range(100))]) == [45, 4950]


def test_starmap(proj: ModuleType) -> None:
    """Map & Starmap: ~add.starmap(zip(range(10), range(10))), and .apply_async(countdown=1)."""
    assert ~proj.add.starmap(zip(range(10), range(10), strict=True)) == [2 * i for i in range(10)]
    res = proj.add.starmap(zip(range(10), range(10), strict=True)).apply_async(countdown=1)
    assert res.get(timeout=TIMEOUT) == [2 * i for i in range(10)]


def test_chunks(proj: ModuleType) -> None:
    """Chunks: add.chunks(zip(range(100), range(100)), 10)(): ten lists of ten results."""
    res = proj.add.chunks(zip(range(100), range(100), strict=True), 10)()
    assert res.get(timeout=TIMEOUT) == [[2 * (10 * c + i) for i in range(10)] for c in range(10)]
    g = proj.add.chunks(zip(range(100), range(100), strict=True), 10).group()
    assert len(g.tasks) == 10
    res = g.skew(start=0, stop=1, step=0.1)()
    assert len(res.get(timeout=TIMEOUT)) == 10


def test_celery_options_cloudq_does_not_take_say_what_to_write(proj: ModuleType) -> None:
    """Where cloudq differs on purpose: the error says what to write instead."""
    with pytest.raises(ConfigurationError, match=r"routing_key.*queue="):
        proj.add.s(2, 2).set(routing_key="telephony")
    with pytest.raises(ConfigurationError, match="JSON only"):
        proj.add.signature((2, 2), serializer="pickle")
