"""Celery's canvas integration tests (``t/integration/test_canvas.py``) that apply to cloudq,
one test each, same canvas and same expected result, on ``memory://`` with a worker thread.
Each test names the Celery test it ports. Where cloudq differs on purpose the test says so."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from cloudq import chain, chord, group
from cloudq.errors import ChordError
from tests.compat.canvas_fixture import TIMEOUT, proj

__all__ = ["proj"]


@pytest.fixture
def t(proj: ModuleType) -> ModuleType:
    return importlib.import_module("integration_tasks")


# --- test_chain -----------------------------------------------------------------------------


def test_simple_chain(t: ModuleType) -> None:
    c = t.add.s(4, 4) | t.add.s(8) | t.add.s(16)
    assert c().get(timeout=TIMEOUT) == 32


def test_single_chain(t: ModuleType) -> None:
    c = chain(t.add.s(3, 4))()
    assert c.get(timeout=TIMEOUT) == 7


def test_complex_chain(t: ModuleType) -> None:
    """add_replaced (Task.replace) written as add: cloudq has no replace."""
    g = group(t.add.s(i) for i in range(4))
    c = t.add.s(2, 2) | (t.add.s(4) | t.add.s(8) | t.add.s(16) | t.add.s(32)) | g
    assert c().get(timeout=TIMEOUT) == [64, 65, 66, 67]


def test_chain_of_chain_with_a_single_task(t: ModuleType) -> None:
    res = chain([chain(t.identity.s(42))]).apply_async()
    assert res.get(timeout=TIMEOUT) == 42


def test_chain_on_error(t: ModuleType) -> None:
    """The failing task's error, for the chain's result and its parent (the failed task)."""
    res = chain(t.add.s(1, 2), t.fail.s(), t.add.s(3, 4))()
    with pytest.raises(t.ExpectedException):
        res.get(timeout=TIMEOUT)
    with pytest.raises(t.ExpectedException):
        res.parent.get(timeout=TIMEOUT)


def test_chain_inside_group_receives_arguments(t: ModuleType) -> None:
    c = t.add.s(5, 6) | group((t.add.s(1) | t.add.s(2), t.add.s(3)))
    assert c().get(timeout=TIMEOUT) == [14, 14]


def test_chain_of_task_a_group_and_a_chord(t: ModuleType) -> None:
    c = t.add.si(1, 0)
    c = c | group(t.add.s(1), t.add.s(1))
    c = c | group(t.tsum.s(), t.tsum.s())
    c = c | t.tsum.s()
    assert c().get(timeout=TIMEOUT) == 8


def test_chain_of_chords_as_groups_chained_to_a_task_with_two_tasks(t: ModuleType) -> None:
    c = t.add.si(1, 0)
    c = c | group(t.add.s(1), t.add.s(1))
    c = c | t.tsum.s()
    c = c | t.add.s(1)
    c = c | group(t.add.s(1), t.add.s(1))
    c = c | t.tsum.s()
    assert c().get(timeout=TIMEOUT) == 12


def test_chain_of_chords_with_two_tasks(t: ModuleType) -> None:
    c = t.add.si(1, 0)
    c = c | group(t.add.s(1), t.add.s(1))
    c = c | t.tsum.s()
    c = c | t.add.s(1)
    c = c | chord(group(t.add.s(1), t.add.s(1)), t.tsum.s())
    assert c().get(timeout=TIMEOUT) == 12


def test_chain_of_explicit_chords(t: ModuleType) -> None:
    add, tsum = t.add, t.tsum
    c1 = chain(
        chord(group(add.si(1, 0), add.si(1, 0)), tsum.s()),
        chord(group(add.s(1), add.s(1)), tsum.s()),
        chord(group(add.s(0), add.s(0)), tsum.s()),
    )
    c2 = chain(
        chord(group(add.s(10), add.s(10)), tsum.s()),
        chord(group(add.s(0), add.s(0)), tsum.s()),
        chord(group(add.s(1), add.s(1)), tsum.s()),
    )
    assert (c1 | c2)().get(timeout=TIMEOUT) == 178


def test_chain_of_nine_chords(t: ModuleType) -> None:
    add, tsum = t.add, t.tsum
    first = chord(group(add.si(1, 0), add.si(1, 0), add.si(1, 0)), tsum.s())
    middle = [chord(group(add.s(1), add.s(1), add.s(1)), tsum.s()) for _ in range(7)]
    last = chord(group(add.s(0), add.s(0), add.s(0)), tsum.s())
    assert chain(first, *middle, last)().get(timeout=TIMEOUT) == 29520


def test_chain_of_a_chord_and_a_group_with_two_tasks(t: ModuleType) -> None:
    c = t.add.si(1, 0)
    c = c | group(t.add.s(1), t.add.s(1))
    c = c | t.tsum.s()
    c = c | t.add.s(1)
    c = c | group(t.add.s(1), t.add.s(1))
    assert c().get(timeout=TIMEOUT) == [6, 6]


def test_chain_of_a_chord_and_a_task_and_a_group(t: ModuleType) -> None:
    c = group(t.add.s(1, 1), t.add.s(1, 1))
    c = c | t.tsum.s()
    c = c | t.add.s(1)
    c = c | group(t.add.s(1), t.add.s(1))
    assert c().get(timeout=TIMEOUT) == [6, 6]


def test_chain_of_a_chord_and_three_tasks_and_a_group(t: ModuleType) -> None:
    c = group(t.add.s(1, 1), t.add.s(1, 1))
    c = c | t.tsum.s()
    c = c | t.add.s(1)
    c = c | t.add.s(1)
    c = c | t.add.s(1)
    c = c | group(t.add.s(1), t.add.s(1))
    assert c().get(timeout=TIMEOUT) == [8, 8]


def test_nested_chain_group_lone(t: ModuleType) -> None:
    """An xfail in Celery (TimeoutError); passes here."""
    res = chain(group(t.identity.s(42), t.identity.s(42))).delay()
    assert res.get(timeout=TIMEOUT) == [42, 42]


def test_nested_chain_group_mid(t: ModuleType) -> None:
    sig = chain(t.identity.s(42), group(t.identity.s(), t.identity.s()), t.identity.s())
    assert sig.delay().get(timeout=TIMEOUT) == [42, 42]


def test_nested_chain_group_last(t: ModuleType) -> None:
    sig = chain(t.identity.s(42), group(t.identity.s(), t.identity.s()))
    assert sig.delay().get(timeout=TIMEOUT) == [42, 42]


def test_freezing_chain_sets_id_of_last_task(t: ModuleType) -> None:
    last_task = t.add.s(2).set(task_id="42")
    c = t.add.s(4) | last_task
    assert c.id is None
    c.freeze(last_task.id)
    assert c.id == last_task.id


def test_group_in_center_of_chain(t: ModuleType) -> None:
    """Task objects in a chord header, as Celery allows: chord([tsum, tsum], ...)."""
    add, tsum = t.add, t.tsum
    t1 = chain(tsum.s(), group(add.s(8), add.s(16)), tsum.s() | add.s(32))
    t2 = chord([tsum, tsum], t1)
    t3 = chord([add.s(0, 1)], t2)
    assert t3.apply_async().get(timeout=TIMEOUT) == 60


# --- test_group -----------------------------------------------------------------------------


def test_group_parent_ids(t: ModuleType) -> None:
    """test_group.test_parent_ids: each member's parent is the task before the group."""
    g = t.ids.si(i=1) | t.ids.si(i=2) | group(t.ids.si(i=i) for i in range(2, 50))
    res = g()
    expected_root_id = res.parent.parent.id
    expected_parent_id = res.parent.id
    for i, (root_id, parent_id, value) in enumerate(res.get(timeout=TIMEOUT)):
        assert (root_id, parent_id, value) == (expected_root_id, expected_parent_id, i + 2)


def test_nested_group(t: ModuleType) -> None:
    add = t.add
    c = group(add.si(1, 10), group(add.si(1, 100), group(add.si(1, 1000), add.si(1, 2000))))
    assert c().get(timeout=TIMEOUT) == [11, 101, 1001, 2001]


def test_large_group(t: ModuleType) -> None:
    res = group(t.identity.s(i) for i in range(1000)).delay()
    assert res.get(timeout=TIMEOUT * 3) == list(range(1000))


def test_group_lone(t: ModuleType) -> None:
    assert group(t.identity.s(42), t.identity.s(42)).delay().get(timeout=TIMEOUT) == [42, 42]


def test_nested_group_group(t: ModuleType) -> None:
    sig = group(group(t.identity.s(42), t.identity.s(42)))
    assert sig.delay().get(timeout=TIMEOUT) == [42, 42]


def test_nested_group_chord_counting_simple(t: ModuleType) -> None:
    child_chord = chord((t.identity.si(42),), t.identity.s())
    assert group((child_chord,)).delay().get(timeout=TIMEOUT) == [[42]]


def test_nested_group_chord_counting_chain(t: ModuleType) -> None:
    child_chord = chord((chain((t.identity.si(1337),) * 42),), t.identity.s())
    assert group((child_chord,)).delay().get(timeout=TIMEOUT) == [[1337]]


def test_nested_group_chord_counting_group(t: ModuleType) -> None:
    child_chord = chord((group((t.identity.si(1337),) * 42),), t.identity.s())
    assert group((child_chord,)).delay().get(timeout=TIMEOUT) == [[1337] * 42]


def test_nested_group_chord_counting_chord(t: ModuleType) -> None:
    gchild = chord((t.identity.si(1337),) * 42, t.identity.si(31337))
    child_chord = chord((gchild,), t.identity.s())
    assert group((child_chord,)).delay().get(timeout=TIMEOUT) == [[31337]]


def test_nested_group_chord_counting_mixed(t: ModuleType) -> None:
    identity = t.identity
    child_chord = chord(
        (
            identity.si(42),
            chain((identity.si(42),) * 42),
            group((identity.si(42),) * 42),
            chord((identity.si(42),) * 42, identity.si(1337)),
        ),
        identity.s(),
    )
    res = group((child_chord,)).delay()
    assert res.get(timeout=TIMEOUT) == [[42, 42, *((42,) * 42), 1337]]


# --- test_chord -----------------------------------------------------------------------------


def test_chord_order(t: ModuleType) -> None:
    inputs = list(range(10))
    assert chord((t.identity.si(i) for i in inputs), t.identity.s())().get(timeout=5) == inputs


def test_group_chain(t: ModuleType) -> None:
    c = t.add.s(2, 2) | group(t.add.s(i) for i in range(4)) | t.add_to_all.s(8)
    assert c().get(timeout=TIMEOUT) == [12, 13, 14, 15]


def test_group_kwargs(t: ModuleType) -> None:
    c = t.add.s(2, 2) | group(t.add.s(i) for i in range(4)) | t.add_to_all.s(8)
    assert c.apply_async(kwargs={"z": 1}).get(timeout=TIMEOUT) == [13, 14, 15, 16]


def test_group_args_and_kwargs(t: ModuleType) -> None:
    c = group(t.add.s(i) for i in range(4)) | t.add_to_all.s(8)
    res = c.apply_async(args=(4,), kwargs={"z": 1})
    assert res.get(timeout=TIMEOUT) == [13, 14, 15, 16]


def test_nested_group_chain(t: ModuleType) -> None:
    add = t.add
    c = chain(
        add.si(1, 0),
        group(add.si(1, 100), chain(add.si(1, 200), group(add.si(1, 1000), add.si(1, 2000)))),
        add.si(1, 10),
    )
    assert c().get(timeout=TIMEOUT) == 11


def test_single_task_header(t: ModuleType) -> None:
    assert chord([t.add.s(2, 5)], body=t.add_to_all.s(9))().get(timeout=TIMEOUT) == [16]
    assert (group([t.add.s(2, 5)]) | t.add_to_all.s(9))().get(timeout=TIMEOUT) == [16]


def test_empty_header_chord(t: ModuleType) -> None:
    assert chord([], body=t.add_to_all.s(9))().get(timeout=TIMEOUT) == []
    assert (group([]) | t.add_to_all.s(9))().get(timeout=TIMEOUT) == []


def test_nested_chord(t: ModuleType) -> None:
    add, add_to_all = t.add, t.add_to_all
    c1 = chord(
        [chord([add.s(1, 2), add.s(3, 4)], add.s([5])), chord([add.s(6, 7)], add.s([10]))],
        add_to_all.s(["A"]),
    )
    assert c1().get(timeout=TIMEOUT) == [[3, 7, 5, "A"], [13, 10, "A"]]
    c2 = group(
        [group([add.s(1, 2), add.s(3, 4)]) | add.s([5]), group([add.s(6, 7)]) | add.s([10])]
    ) | add_to_all.s(["A"])
    assert c2().get(timeout=TIMEOUT) == [[3, 7, 5, "A"], [13, 10, "A"]]
    c = group(
        [group([group([group([add.s(1, 2)]) | add.s([3])]) | add.s([4])]) | add.s([5])]
    ) | add.s([6])
    assert c().get(timeout=TIMEOUT) == [[[[3, 3], 4], 5], 6]


def test_chord_parent_ids(t: ModuleType) -> None:
    """test_chord.test_parent_ids: the root is the chain's first task all the way down."""
    ids, collect_ids = t.ids, t.collect_ids
    root = ids.si(i=1)
    expected_root_id = root.freeze().id
    g = chain(
        root,
        ids.si(i=2),
        chord(group(ids.si(i=i) for i in range(3, 50)), chain(collect_ids.s(i=50) | ids.si(i=51))),
    )
    res = g()
    root_id, parent_id, value = res.get(timeout=TIMEOUT)
    assert (root_id, value) == (expected_root_id, 51)
    assert parent_id == res.parent.id
    (header, (c_root, _, i)) = res.parent.get(timeout=TIMEOUT)
    assert (c_root, i) == (expected_root_id, 50)
    assert [h[0] for h in header] == [expected_root_id] * 47
    assert [h[2] for h in header] == list(range(3, 50))


def test_parallel_chords(t: ModuleType) -> None:
    c1 = chord(group(t.add.s(1, 2), t.add.s(3, 4)), t.tsum.s())
    c2 = chord(group(t.add.s(1, 2), t.add.s(3, 4)), t.tsum.s())
    assert group(c1, c2).delay().get(timeout=TIMEOUT) == [10, 10]


def test_chord_in_chords_with_chains(t: ModuleType) -> None:
    add = t.add
    inner = [
        chain(add.si(1, 2), chord(group([add.si(1, 2), add.si(1, 2)]), add.si(1, 2)))
        for _ in range(2)
    ]
    c = chord(group(inner), add.si(2, 2))
    assert c.delay().get(timeout=TIMEOUT) == 4


def test_chain_chord_chain_chord(t: ModuleType) -> None:
    identity = t.identity
    c = chain(
        identity.si(1),
        chord(
            [
                identity.si(2),
                chain(identity.si(3), chord([identity.si(4), identity.si(5)], identity.si(6))),
            ],
            identity.si(7),
        ),
    )
    assert c.delay().get(timeout=TIMEOUT) == 7


def test_chord_in_chain_with_args(t: ModuleType) -> None:
    """An xfail in Celery (issue 6176); passes here."""
    c1 = chain(chord([t.identity.s(), t.identity.s()], t.identity.s()), t.identity.s())
    assert c1.apply_async(args=(1,)).get(timeout=TIMEOUT) == [1, 1]


def test_chain_in_chain_with_args(t: ModuleType) -> None:
    """An xfail in Celery (issue 6200); passes here."""
    c1 = chain(chain(t.identity.s(), t.identity.s()))
    assert c1.apply_async(args=(1,)).get(timeout=TIMEOUT) == 1


def test_large_header(t: ModuleType) -> None:
    c = group(t.identity.si(i) for i in range(1000)) | t.tsum.s()
    assert c.delay().get(timeout=TIMEOUT * 3) == 499500


def test_chain_to_a_chord_with_large_header(t: ModuleType) -> None:
    c = t.identity.si(1) | group(t.identity.s() for _ in range(1000)) | t.tsum.s()
    assert c.delay().get(timeout=TIMEOUT * 3) == 1000


def test_nested_chord_group(t: ModuleType) -> None:
    sig = chord((group(t.identity.s(42), t.identity.s(42)),), t.identity.s())
    assert sig.delay().get(timeout=TIMEOUT) == [42, 42]


def test_nested_chord_group_chain_group_tail(t: ModuleType) -> None:
    identity = t.identity
    sig = chord(group(chain(identity.s(42), group(identity.s(), identity.s()))), identity.s())
    assert sig.delay().get(timeout=TIMEOUT) == [[42, 42]]


def test_error_propagates_from_chord(t: ModuleType) -> None:
    """An xfail in Celery on Redis (issue 6437); passes here."""
    res = (t.add.s(1, 1) | t.fail.s() | group(t.add.s(1), t.add.s(1))).delay()
    with pytest.raises(t.ExpectedException):
        res.get(timeout=TIMEOUT)


def test_error_propagates_from_chord2(t: ModuleType) -> None:
    res = (t.add.s(1, 1) | t.add.s(1) | group(t.add.s(1), t.fail.s())).delay()
    with pytest.raises(t.ExpectedException):
        res.get(timeout=TIMEOUT)


@pytest.mark.parametrize(
    "child",
    [
        pytest.param(lambda t: t.fail.s(), id="simple"),
        pytest.param(lambda t: chain(t.identity.si(42), t.fail.s(), t.identity.si(42)), id="chain"),
        pytest.param(lambda t: chain(t.identity.si(42), t.fail.s()), id="chain_tail"),
        pytest.param(lambda t: group(t.identity.si(42), t.fail.s()), id="group"),
    ],
)
def test_error_propagates_to_chord_from_header(t: ModuleType, child: object) -> None:
    """test_error_propagates_to_chord_from_{simple,chain,chain_tail,group}, the header half:
    the body fails with ChordError naming the failed task and its error (Celery's guide)."""
    res = chord((child(t),), t.identity.s()).delay()  # type: ignore[operator]
    with pytest.raises(ChordError, match=r"Dependency .* raised ExpectedException"):
        res.get(timeout=TIMEOUT)


@pytest.mark.parametrize(
    "child",
    [
        pytest.param(lambda t: t.fail.s(), id="simple"),
        pytest.param(lambda t: chain(t.identity.si(42), t.fail.s(), t.identity.si(42)), id="chain"),
        pytest.param(lambda t: chain(t.identity.si(42), t.fail.s()), id="chain_tail"),
        pytest.param(lambda t: group(t.identity.si(42), t.fail.s()), id="group"),
    ],
)
def test_error_propagates_to_chord_from_body(t: ModuleType, child: object) -> None:
    """The same four tests, the body half: the body's own error."""
    res = chord((t.identity.si(42),), child(t)).delay()  # type: ignore[operator]
    with pytest.raises(t.ExpectedException):
        res.get(timeout=TIMEOUT)
