"""The dashboard in a real browser (headless Chromium, Selenium) against a real worker on moto
SQS with Redis and with DynamoDB: the pages load, a task appears (in the list where the store
keeps events, on its page otherwise), a chain step's page shows its place, and a revoke and a
dead-letter redrive done by clicking take effect in the broker. One browser for the module.
``CLOUDQ_DASHBOARD_SCREENSHOTS=docs/dashboard`` saves the screenshots the docs show (Redis's)."""

from __future__ import annotations

from typing import Any

import pytest

from cloudq import chain
from cloudq.errors import TaskRevokedError
from cloudq.results.base import State
from tests.dashboard.browser import chromium, screenshot, script_errors, until
from tests.dashboard.dash_app import XSS
from tests.dashboard.harness import PASSWORD, USER, start_dashboard, start_worker
from tests.integration.stack import Stack
from tests.processes import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.parametrize("store", ["redis", "dynamodb"], indirect=True),
]


@pytest.fixture(scope="module")
def chromium_session() -> Any:
    with chromium(USER, PASSWORD) as driver:
        yield driver


@pytest.fixture
def browser(chromium_session: Any) -> Any:
    """The module's browser on a blank page, its console drained: the last test's page polled a
    dashboard that is gone, and those errors are not this test's."""
    chromium_session.get("about:blank")
    chromium_session.get_log("browser")
    yield chromium_session
    chromium_session.get("about:blank")


def test_pages_a_task_a_revoke_and_a_redrive_in_the_browser(
    stack: Stack, store: str, browser: Any
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    producer = stack.producer()
    producer.ensure_queue("default")
    start_worker(stack, "-E")
    dash = start_dashboard(stack)
    css = browser.find_element

    # Workers: the live worker's row, with its commands.
    browser.get(f"{dash.url}/workers")
    row = until(lambda: css(By.CSS_SELECTOR, "tr.worker"), 20, "the worker's row")
    assert "default" in row.text
    assert css(By.CSS_SELECTOR, "tr.worker button[name=shutdown]")

    # Tasks: a finished task appears by itself (htmx refresh), a failed one too.
    added = producer.tasks["dash.add"].delay(20, 22)
    assert added.get(timeout=30) == 42
    failed = producer.tasks["dash.boom"].delay(XSS)
    shoot = screenshot if store == "redis" else lambda driver, name: None
    browser.get(f"{dash.url}/tasks")
    if store == "redis":
        until(
            lambda: "SUCCESS" in css(By.CSS_SELECTOR, f"tr[data-task-id='{added.id}']").text,
            20,
            "the task in the list",
        )
        until(lambda: css(By.CSS_SELECTOR, f"tr[data-task-id='{failed.id}']"), 20, "the failure")
        shoot(browser, "tasks")
    else:  # no event stream: the page says so, and the task is found by its id
        assert "keeps no event stream" in css(By.ID, "tasks-note").text
        css(By.NAME, "id").send_keys(added.id + "\n")
        until(lambda: css(By.ID, "state").text == "SUCCESS", 10, "the task's page")

    # A chain's middle step: its parent, its place and the next step, linked.
    add = producer.tasks["dash.add"]
    steps = chain(add.s(1, 2), add.s(3), add.s(4)).apply_async()
    assert steps.get(timeout=30) == 10
    assert steps.parent is not None and steps.parent.parent is not None
    browser.get(f"{dash.url}/task/{steps.parent.id}")
    assert "step 2 of 3" in until(lambda: css(By.ID, "chain"), 10, "the chain row").text
    css(By.CSS_SELECTOR, "#chain a").click()
    until(lambda: "step 3 of 3" in css(By.ID, "chain").text, 10, "the next step's page")
    assert steps.parent.id in css(By.ID, "parent").text
    shoot(browser, "task-chain")

    # Revoke by clicking: a countdown task never runs.
    marker = stack.tmp / "ran"
    later = producer.tasks["dash.touch"].apply_async((str(marker),), countdown=4)
    browser.get(f"{dash.url}/task/{later.id}")
    css(By.ID, "revoke").click()
    until(lambda: "Revoked" in css(By.ID, "notice").text, 10, "the revoke notice")
    with pytest.raises(TaskRevokedError):
        later.get(timeout=30)
    assert not marker.exists()

    # Dead letters: select the fixable one, confirm, watch the job; the other stays.
    fixed = stack.tmp / "fixed"
    flaky = producer.tasks["dash.flaky"].delay(str(fixed))
    wait_for(
        lambda: producer.broker.stats("default").dead_lettered == 2,
        30,
        "2 dead letters",
        stack.logs,
    )
    fixed.write_text("")
    browser.get(f"{dash.url}/dead-letters?queue=default")
    until(lambda: css(By.CSS_SELECTOR, f"tr[data-task-id='{flaky.id}']"), 10, "the dead letter")
    assert XSS in css(By.CSS_SELECTOR, f"tr[data-task-id='{failed.id}']").text, "shown as text"
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    shoot(browser, "dead-letters")
    css(By.CSS_SELECTOR, f"tr[data-task-id='{flaky.id}'] input[name=ids]").click()
    css(By.ID, "redrive-selected").click()
    assert (
        "1 selected dead letter" in until(lambda: css(By.ID, "question"), 10, "the question").text
    )
    css(By.ID, "confirm").click()
    done = until(lambda: css(By.ID, "job-done"), 30, "the redrive job to finish")
    assert "Redrove 1 message(s)" in done.text
    wait_for(
        lambda: producer.AsyncResult(flaky.id).state == State.SUCCESS,
        30,
        "the redriven task to succeed",
        stack.logs,
    )
    wait_for(lambda: producer.broker.stats("default").dead_lettered == 1, 30, "1 left", stack.logs)

    # The failed task's page: error and traceback as text; the queues page and its chart.
    browser.get(f"{dash.url}/task/{failed.id}")
    assert XSS in until(lambda: css(By.ID, "error"), 10, "the error").text
    assert "Traceback" in css(By.ID, "traceback").text
    shoot(browser, "task")
    browser.get(f"{dash.url}/queues")
    until(lambda: css(By.CSS_SELECTOR, "#chart[data-ready='1'] canvas"), 20, "the chart")
    assert css(By.CSS_SELECTOR, "tr.queue[data-queue=default] td.dead").text == "1"
    shoot(browser, "queues")
    browser.get(f"{dash.url}/workers")
    until(lambda: css(By.CSS_SELECTOR, "tr.worker"), 20, "the worker's row")
    shoot(browser, "workers")
    assert script_errors(browser) == []
