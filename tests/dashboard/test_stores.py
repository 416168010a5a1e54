"""The dashboard on the stores and brokers the subprocess tests do not cover, served in the
test's process: ``memory://`` (one process by nature), Firestore on its emulator and Azure
Tables on Azurite as state stores, and the Pub/Sub emulator and the Service Bus test endpoint
as brokers (queue counts from their own ``stats``). The task page's family (parent, children,
chain and chord position) and the arguments' redaction are checked on memory."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from cloudq import App, chain, chord
from cloudq.reports import REDACTED
from cloudq.testing import process_one, start_worker
from tests.dashboard import dash_app
from tests.dashboard.dash_app import XSS
from tests.dashboard.inprocess import serve
from tests.fixtures.pubsub_emulator import GCP_PROJECT
from tests.processes import wait_for


def run_all(app: App, queue: str = "default") -> int:
    """Run what is due on ``queue`` here, follow-ups included; how many ran."""
    ran = 0
    while process_one(app, queue) is not None:
        ran += 1
    return ran


@pytest.fixture
def memory_app() -> Iterator[App]:
    name = f"dash-{uuid.uuid4().hex[:8]}"
    app = dash_app.make_app(broker_url=f"memory://{name}", result_backend=f"memory://{name}")
    yield app
    app.close()


def test_the_task_page_shows_parent_children_and_chain_and_chord_position(
    memory_app: App,
) -> None:
    app = memory_app
    add, total = app.tasks["dash.add"], app.tasks["dash.total"]
    steps = chain(add.s(1, 2), add.s(3), add.s(4)).apply_async()
    joined = chord([add.s(1, 1), add.s(2, 2)], total.s()).apply_async()
    spawned = app.tasks["dash.spawn"].delay(5)
    run_all(app)
    assert steps.get(timeout=1) == 10 and joined.get(timeout=1) == 6
    middle, last = steps.parent, steps
    assert middle is not None and middle.parent is not None
    first = middle.parent

    with serve(app) as dash:
        info = dash.get(f"/api/task/info/{middle.id}").json()
        assert info["parent"] == {"id": first.id, "name": "dash.add", "state": "SUCCESS"}
        assert info["chain"] == {
            "step": 2,
            "of": 3,
            "next": [{"id": last.id, "name": "dash.add", "state": "SUCCESS"}],
        }
        assert [c["id"] for c in info["children"]] == [last.id], "the next step, as Celery"
        assert dash.get(f"/api/task/info/{first.id}").json()["chain"]["step"] == 1
        assert dash.get(f"/api/task/info/{last.id}").json()["chain"]["of"] == 3

        (child_id,) = [c["id"] for c in dash.get(f"/api/task/info/{spawned.id}").json()["children"]]
        child = dash.get(f"/api/task/info/{child_id}").json()
        assert child["parent"]["id"] == spawned.id and child["chain"] is None

        header = joined.parent  # the chord's header, a GroupResult
        assert header is not None
        part = dash.get(f"/api/task/info/{header.results[1].id}").json()
        assert (part["chord_index"], part["chord_id"]) == (1, header.id)

        page = dash.get(f"/task/{middle.id}").text
        assert re.search(r'id="chain">step 2 of 3; next: <a href="/task/', page)
        assert f'id="parent"><a href="/task/{first.id}"' in page
        assert "part 2 of chord" in dash.get(f"/task/{header.results[1].id}").text


def test_arguments_are_shown_only_for_tasks_that_set_report_args(memory_app: App) -> None:
    app = memory_app
    private = app.tasks["dash.private"].delay("someone@example.com")
    shown = app.tasks["dash.boom"].delay(XSS)
    run_all(app)
    with serve(app) as dash:
        listing = dash.get("/dead-letters?queue=default").text
        assert "someone@example.com" not in listing
        assert "&lt;redacted: set report_args=True" in listing
        assert "args=[&#34;&lt;script&gt;" in listing, "report_args: shown, escaped"
        assert dash.get(f"/api/task/info/{private.id}").json()["args"] == REDACTED
        assert XSS in dash.get(f"/api/task/info/{shown.id}").json()["args"]
        assert "someone@example.com" not in dash.get(f"/task/{private.id}").text


def test_the_task_page_shows_what_result_extended_kept(memory_app: App) -> None:
    app = memory_app
    app.conf.result_extended = True
    result = app.tasks["dash.private"].delay(XSS)  # no report_args: the app chose to keep them
    run_all(app)
    with serve(app) as dash:
        info = dash.get(f"/api/task/info/{result.id}").json()
        assert XSS in info["args"] and info["queue"] == "default"
        page = dash.get(f"/task/{result.id}").text
        assert "&lt;script&gt;" in page and XSS not in page, "kept arguments: shown, escaped"


# --- the other stores and brokers, on their emulators --------------------------------------------
STATE_STORES = {
    "firestore": ("firestore_env", lambda name: f"firestore://{GCP_PROJECT}/dash-{name}"),
    "azuretable": ("azure_storage_env", lambda name: f"azuretable://dash{name}?create=1"),
}
BROKERS = {
    "pubsub": ("pubsub_env", lambda name: f"pubsub://{GCP_PROJECT}?prefix=dash-{name}-"),
    "servicebus": ("servicebus_env", lambda name: f"servicebus://?prefix=dash-{name}-"),
}


def through_the_dashboard(app: App, counted: bool) -> None:
    """A worker here, a task run by it, then the dashboard's API shows both and the queue."""
    app.ensure_queue("default")
    result = app.tasks["dash.add"].delay(2, 3)
    with start_worker(app, ["default"], concurrency=1, poll_seconds=0.2):
        assert result.get(timeout=30) == 5
        with serve(app) as dash:
            workers = wait_for(
                lambda: (r := dash.get("/api/workers")).status == 200 and r.json(), 20, "a worker"
            )
            assert [w["active_queues"] for w in workers.values()] == [[{"name": "default"}]]
            info = dash.get(f"/api/task/info/{result.id}").json()
            assert (info["state"], info["name"], info["result"]) == ("SUCCESS", "dash.add", 5)
            (row,) = dash.get("/api/queues/length").json()["active_queues"]
            assert row["name"] == "default" and row["error"] is None
            # Pub/Sub's API has no counts: shown as unknown, never as 0.
            assert row["messages"] == (0 if counted else None)
            assert dash.get("/queues").status == 200
            assert dash.get("/dead-letters?queue=default").status == 200


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", list(STATE_STORES))
def test_the_dashboard_on_a_cloud_state_store(kind: str, request: pytest.FixtureRequest) -> None:
    fixture, url = STATE_STORES[kind]
    request.getfixturevalue(fixture)
    name = uuid.uuid4().hex[:10]
    app = dash_app.make_app(broker_url=f"memory://dash-{name}", result_backend=url(name))
    try:
        through_the_dashboard(app, counted=True)
        with serve(app) as dash:
            assert "keeps no event stream" in dash.get("/tasks").text
    finally:
        app.close()


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", list(BROKERS))
def test_the_dashboard_on_a_cloud_broker(kind: str, request: pytest.FixtureRequest) -> None:
    fixture, url = BROKERS[kind]
    request.getfixturevalue(fixture)
    name = uuid.uuid4().hex[:10]
    app = dash_app.make_app(broker_url=url(name), result_backend=f"memory://dash-{name}")
    try:
        through_the_dashboard(app, counted=kind != "pubsub")
    finally:
        app.close()
