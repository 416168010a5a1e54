"""The dashboard's API and forms over real HTTP: a ``cloudq dashboard`` subprocess (uvicorn) and
real ``cloudq worker`` subprocesses on moto SQS, with Redis and with DynamoDB as the state store.
"""

from __future__ import annotations

import re

import pytest

from cloudq.errors import TaskRevokedError
from cloudq.results.base import State
from tests.dashboard.dash_app import XSS
from tests.dashboard.forms import post_form, session
from tests.dashboard.harness import PASSWORD, USER, start_dashboard, start_worker
from tests.integration.stack import Stack
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def dead_lettered(stack: Stack, count: int) -> None:
    producer = stack.producer()
    wait_for(
        lambda: producer.broker.stats("default").dead_lettered == count,
        30,
        f"{count} dead letter(s)",
        stack.logs,
    )


def test_api_shows_the_worker_a_finished_task_and_queue_lengths(stack: Stack, store: str) -> None:
    producer = stack.producer()
    producer.ensure_queue("default")
    worker = start_worker(stack, "-E")
    dash = start_dashboard(stack)
    result = producer.tasks["dash.add"].delay(2, 3)
    assert result.get(timeout=30) == 5

    workers = wait_for(lambda: dash.get("/api/workers").json(), 20, "a worker", stack.logs)
    ((hostname, info),) = workers.items()
    assert info["stats"]["pid"] == worker.pid
    assert info["active_queues"] == [{"name": "default"}]
    assert "dash.add" in info["registered"]

    task = dash.get(f"/api/task/info/{result.id}").json()
    assert (task["state"], task["name"], task["result"]) == ("SUCCESS", "dash.add", 5)
    assert dash.get(f"/api/task/result/{result.id}").json()["result"] == 5
    unknown = dash.get("/api/task/info/no-such-task")
    assert unknown.status == 404 and "Unknown task" in unknown.json()["error"]

    (default,) = [q for q in dash.get("/api/queues/length").json()["active_queues"]]
    assert default["name"] == "default" and default["messages"] == 0 and default["error"] is None

    if store == "redis":  # an event stream: recent tasks, with the worker that ran them
        tasks = wait_for(
            lambda: (
                (t := dash.get("/api/tasks").json()).get(result.id, {}).get("state") == "SUCCESS"
                and t
            ),
            20,
            "the task in /api/tasks",
            stack.logs,
        )
        assert tasks[result.id]["worker"] == hostname
        assert dash.get("/api/queues/history").json()["source"] == "events"
    else:  # DynamoDB keeps no event stream: the pages say so
        # Only running tasks are listed (from heartbeats): the finished one goes with the
        # worker's next heartbeat, so wait for that rather than read one snapshot.
        wait_for(
            lambda: dash.get("/api/tasks").json() == {},
            20,
            "the finished task gone from /api/tasks",
            stack.logs,
        )
        assert "keeps no event stream" in dash.get("/tasks").text
        assert dash.get("/api/queues/history").json()["source"] == "heartbeats"
        assert "keeps no event stream" in dash.get("/queues").text


@pytest.mark.parametrize("store", ["redis"], indirect=True)  # DynamoDB: the browser test does both
def test_api_revoke_and_worker_commands_take_effect(stack: Stack) -> None:
    producer = stack.producer()
    producer.ensure_queue("default")
    worker = start_worker(stack)
    dash = start_dashboard(stack)
    marker = stack.tmp / "ran"
    result = producer.tasks["dash.touch"].apply_async((str(marker),), countdown=3)

    revoked = dash.api_post(f"/api/task/revoke/{result.id}")
    assert revoked.status == 200, revoked.text
    assert revoked.json() == {"message": f"Revoked '{result.id}'"}
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert not marker.exists()
    assert dash.get(f"/api/task/info/{result.id}").json()["state"] == "REVOKED"
    assert dash.process.wait_log(rf"user {USER}: revoke {result.id}", 5)

    hostname = next(iter(wait_for(lambda: dash.get("/api/workers").json(), 20, "a worker")))
    grown = dash.api_post(f"/api/worker/pool/grow/{hostname}?n=2")
    assert grown.status == 200 and grown.json()["message"] == "pool will grow to 4", grown.text
    wait_for(
        lambda: dash.get("/api/workers").json()[hostname]["stats"]["concurrency"] == 4,
        20,
        "the grown pool in the worker's record",
    )
    assert dash.api_post("/api/worker/pool/shrink/no-such-worker").status == 404
    stopped = dash.api_post(f"/api/worker/shutdown/{hostname}")
    assert stopped.status == 200, stopped.text
    assert worker.wait_exit(30) == 0
    assert dash.process.wait_log(rf"user {USER}: shutdown {re.escape(hostname)}", 5)


@pytest.mark.parametrize("store", ["redis"], indirect=True)  # DynamoDB: the browser test does both
def test_dead_letters_redrive_behind_a_confirmation(stack: Stack) -> None:
    producer = stack.producer()
    producer.ensure_queue("default")
    start_worker(stack)
    dash = start_dashboard(stack)
    marker = stack.tmp / "fixed"
    result = producer.tasks["dash.flaky"].delay(str(marker))
    dead_lettered(stack, 1)

    page = dash.get("/dead-letters?queue=default")
    assert result.id in page.text and "is missing" in page.text
    marker.write_text("")  # the cause fixed: the redriven task will succeed
    cookie, token = session(dash, "/dead-letters?queue=default")
    ask = post_form(dash, "/dead-letters/default/redrive", [], cookie, token)
    assert ask.status == 200 and "Yes, redrive" in ask.text
    assert producer.broker.stats("default").dead_lettered == 1, "asking moved nothing"
    done = post_form(dash, "/dead-letters/default/redrive", [("confirmed", "1")], cookie, token)
    assert (done.status == 200 and "Redrove" in done.text) or "running" in done.text, done.text
    wait_for(
        lambda: producer.AsyncResult(result.id).state == State.SUCCESS,
        30,
        "the redriven task to succeed",
        stack.logs,
    )
    dead_lettered(stack, 0)
    assert dash.process.wait_log(rf"user {USER}: Redrove 1 message\(s\) from \S+ to default", 10)


@pytest.mark.parametrize("store", ["redis"], indirect=True)  # DynamoDB: the browser test does both
def test_what_came_from_a_message_is_escaped(stack: Stack) -> None:
    producer = stack.producer()
    producer.ensure_queue("default")
    start_worker(stack, "-E")
    dash = start_dashboard(stack)
    result = producer.tasks["dash.boom"].delay(XSS)
    dead_lettered(stack, 1)
    escaped = "&lt;script&gt;alert("

    listing = dash.get("/dead-letters?queue=default").text
    assert XSS not in listing
    assert listing.count(escaped) >= 3, "in the error, its traceback and the arguments"
    page = dash.get(f"/task/{result.id}").text  # error and (listed above) arguments
    assert XSS not in page
    assert "ValueError" in page and "&lt;script&gt;" in page
    assert re.search(r'id="args"><code>[^<]*&lt;script&gt;', page), "the args, escaped"
    api = dash.get(f"/api/task/info/{result.id}")
    assert api.headers["content-type"].startswith("application/json")
    assert XSS in api.json()["exception"]  # JSON keeps the sender's exact text

    cookie, token = session(dash, "/dead-letters?queue=default")
    ask = post_form(dash, "/dead-letters/default/purge", [], cookie, token)
    assert ask.status == 200 and "There is no undo" in ask.text
    assert producer.broker.stats("default").dead_lettered == 1, "asking purged nothing"
    post_form(dash, "/dead-letters/default/purge", [("confirmed", "1")], cookie, token)
    dead_lettered(stack, 0)


@pytest.mark.parametrize("store", ["redis"], indirect=True)
def test_every_route_needs_auth_and_every_action_a_csrf_proof(stack: Stack) -> None:
    producer = stack.producer()
    producer.ensure_queue("default")
    dash = start_dashboard(stack)
    for path in ("/workers", "/api/workers", "/static/htmx.min.js", "/task/x"):
        anonymous = dash.get(path, auth=None)
        assert anonymous.status == 401 and "Basic" in anonymous.headers["www-authenticate"]
        assert dash.get(path, auth=(USER, "wrong")).status == 401
        assert dash.get(path, auth=("someone", PASSWORD)).status == 401

    # The API: the custom header, and never from another site.
    bare = dash.request("POST", "/api/task/revoke/t-1", data=b"")
    assert bare.status == 403
    cross = dash.api_post("/api/task/revoke/t-2", headers={"Origin": "http://evil.example"})
    assert cross.status == 403
    fetched = dash.api_post("/api/task/revoke/t-3", headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status == 403
    assert dash.get("/api/task/info/t-1").status == 404, "a refused revoke recorded nothing"

    # Forms: the token of the user's cookie.
    cookie, token = session(dash, "/task/t-4")
    assert post_form(dash, "/task/t-4/revoke", [], cookie, None).status == 403
    assert post_form(dash, "/task/t-4/revoke", [], None, token).status == 403
    other_cookie, other_token = session(dash, "/task/t-4")
    assert post_form(dash, "/task/t-4/revoke", [], cookie, other_token).status == 403
    assert dash.get("/api/task/info/t-4").status == 404
    assert post_form(dash, "/task/t-4/revoke", [], other_cookie, other_token).status == 200
    assert dash.get("/api/task/info/t-4").json()["state"] == "REVOKED"

    page = dash.get("/workers")
    assert PASSWORD not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "SameSite=Strict" in page.headers["set-cookie"]
    assert "HttpOnly" in page.headers["set-cookie"]
