"""``cloudq.control.redrive``'s public calls, which ``cloudq dlq`` and the dashboard share: one
read loop for listing, one redrive loop for all or a selection."""

from __future__ import annotations

import uuid

from cloudq import App
from cloudq.adapters.base import dead_letter_queue_name
from cloudq.control.redrive import NOT_FOUND, read_dead_letters, redrive, redrive_ids
from cloudq.envelope import decode
from cloudq.testing import process_one


def make_app() -> App:
    name = uuid.uuid4().hex
    app = App("rd", broker=f"memory://{name}", backend=f"memory://{name}")

    @app.task(name="rd.fail", max_retries=0, queue="work")
    def fail(n: int) -> None:
        raise ValueError(f"failed {n}")

    return app


def dead_letters(app: App, count: int) -> list[str]:
    """``count`` tasks dead-lettered by a worker; their task ids."""
    ids = [app.tasks["rd.fail"].delay(n).id for n in range(count)]
    for _ in ids:
        assert process_one(app, "work") is not None
    return ids


def test_listing_reads_each_once_and_releases_them() -> None:
    app = make_app()
    ids = dead_letters(app, 3)
    listed = read_dead_letters(app, "work", 10)
    assert sorted(decode(d.body).id for d in listed) == sorted(ids)
    assert len(read_dead_letters(app, "work", 2)) == 2, "released at once, and bounded"
    assert app.broker.stats("work").dead_lettered == 3
    app.close()


def test_redrive_ids_moves_only_the_selection_and_names_what_it_did_not_find() -> None:
    app = make_app()
    dead_letters(app, 3)
    listed = read_dead_letters(app, "work", 10)
    chosen = listed[1]
    moved = redrive_ids(app, "work", [chosen.message_id, "gone-already"])
    assert moved.moved == 1
    assert moved.skipped == {"gone-already": NOT_FOUND}
    [sent] = app.broker.receive("work", 10, 0, 30)
    assert decode(sent.body).id == decode(chosen.body).id
    assert decode(sent.body).attempt == 1
    left = read_dead_letters(app, "work", 10)
    assert sorted(d.message_id for d in left) == sorted(
        d.message_id for d in listed if d is not chosen
    )
    assert redrive(app, "work").moved == 2
    assert app.broker.receive(dead_letter_queue_name("work"), 10, 0, 30) == []
    app.close()
