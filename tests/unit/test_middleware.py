"""The hook bus and Celery's signals on it: what is wired in the producer, worker and beat."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cloudq import App
from cloudq import signals as sig
from cloudq.errors import ConfigurationError
from cloudq.middleware import Middleware
from cloudq.testing import start_worker


class Recorder(Middleware):
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def before_publish(self, app: App, **kw: Any) -> None:
        kw["headers"]["traceparent"] = "00-abc-def-01"
        self.calls.append(("before_publish", kw))

    def after_publish(self, app: App, **kw: Any) -> None:
        self.calls.append(("after_publish", kw))

    def worker_start(self, app: App, **kw: Any) -> None:
        self.calls.append(("worker_start", kw))

    def process_start(self, app: App, **kw: Any) -> None:
        self.calls.append(("process_start", kw))

    def worker_ready(self, app: App, **kw: Any) -> None:
        self.calls.append(("worker_ready", kw))

    def worker_stop(self, app: App, **kw: Any) -> None:
        self.calls.append(("worker_stop", kw))


class Broken(Middleware):
    def before_publish(self, app: App, **kw: Any) -> None:
        raise RuntimeError("middleware bug")


@pytest.fixture
def disconnect() -> Iterator[list[tuple[Any, Any]]]:
    """Signals are global: each test's receivers are disconnected afterwards."""
    connected: list[tuple[Any, Any]] = []
    yield connected
    for signal, receiver in connected:
        signal.disconnect(receiver)


def make_app(name: str, **kw: Any) -> App:
    return App(name, broker=f"memory://{name}", backend=f"memory://{name}", **kw)


def test_publish_hooks_see_each_send_and_headers_travel_with_the_task() -> None:
    recorder = Recorder()
    app = make_app("mw-publish", middleware=[recorder])

    @app.task(bind=True)
    def echo(self: Any) -> str:
        return self.request.headers["traceparent"]

    with start_worker(app) as worker:
        result = echo.delay()
        assert result.get(timeout=10) == "00-abc-def-01"
        names = [name for name, _ in recorder.calls]
        assert names[:3] == ["worker_start", "process_start", "worker_ready"]
        assert names.count("before_publish") == names.count("after_publish") == 1
        (published,) = [kw for name, kw in recorder.calls if name == "after_publish"]
        assert published["envelope"].id == result.id
        assert published["queue"] == "default"
        assert recorder.calls[0][1]["worker"] is worker
    assert recorder.calls[-1][0] == "worker_stop"


def test_a_middleware_that_raises_is_logged_and_the_task_still_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app("mw-broken", middleware=[Broken(), Recorder()])

    @app.task
    def one() -> int:
        return 1

    with caplog.at_level(logging.ERROR, "cloudq.middleware"), start_worker(app):
        assert one.delay().get(timeout=10) == 1
    assert "middleware Broken.before_publish raised" in caplog.text


def test_bad_middleware_is_refused_clearly() -> None:
    with pytest.raises(ConfigurationError, match="pass an instance, not the class"):
        make_app("mw-class", middleware=[Recorder])
    with pytest.raises(ConfigurationError, match="has none of the hooks"):
        make_app("mw-none").add_middleware(object())


def test_no_middleware_and_no_receiver_means_nothing_is_called() -> None:
    app = make_app("mw-idle")
    assert not any(app.hooks.active(h) for h in ("before_publish", "worker_ready"))


def test_celery_publish_signals_with_sender_filter(disconnect: list[tuple[Any, Any]]) -> None:
    app = make_app("mw-signals")
    seen: list[tuple[str, Any, Any]] = []

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.other")
    def other() -> None: ...

    @sig.before_task_publish.connect(sender="tasks.add")
    def before(sender: Any = None, headers: Any = None, body: Any = None, **kw: Any) -> None:
        seen.append(("before", sender, headers["id"]))
        headers["x-tenant"] = "acme"

    @sig.after_task_publish.connect
    def after(sender: Any = None, headers: Any = None, routing_key: Any = None, **kw: Any) -> None:
        seen.append(("after", sender, (headers.get("x-tenant"), routing_key)))

    disconnect += [(sig.before_task_publish, before), (sig.after_task_publish, after)]
    assert app.hooks.active("before_publish")
    first = add.delay(1, 2)
    other.delay()
    assert seen == [
        ("before", "tasks.add", first.id),
        ("after", "tasks.add", ("acme", "default")),
        ("after", "tasks.other", (None, "default")),
    ]


def test_worker_signals_and_a_receiver_that_raises(
    disconnect: list[tuple[Any, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app("mw-worker-signals")
    order: list[str] = []

    def on(name: str) -> Any:
        def receiver(sender: Any = None, **kw: Any) -> None:
            order.append(name)
            if name == "worker_ready":
                raise RuntimeError("receiver bug")

        return receiver

    for signal in (sig.worker_init, sig.worker_process_init, sig.worker_ready, sig.worker_shutdown):
        receiver = on(signal.name)
        signal.connect(receiver)
        disconnect.append((signal, receiver))
    with caplog.at_level(logging.ERROR, "cloudq.signals"), start_worker(app):
        pass
    assert order == ["worker_init", "worker_process_init", "worker_ready", "worker_shutdown"]
    assert "signal worker_ready: receiver" in caplog.text


class Steps(Middleware):
    """Records each task-life hook by name, with the task id where there is one."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _note(self, hook: str, kw: dict[str, Any]) -> None:
        envelope = kw.get("envelope")
        detail = getattr(envelope, "id", "-")
        if "state" in kw:
            detail += f":{kw['state']}"
        self.seen.append(f"{hook} {detail}")

    def received(self, app: App, **kw: Any) -> None:
        self._note("received", kw)

    def before_execute(self, app: App, **kw: Any) -> None:
        self._note("before_execute", kw)

    def after_execute(self, app: App, **kw: Any) -> None:
        self._note("after_execute", kw)

    def retry(self, app: App, **kw: Any) -> None:
        self._note("retry", kw)

    def dead_letter(self, app: App, **kw: Any) -> None:
        self._note("dead_letter", kw)

    def revoked(self, app: App, **kw: Any) -> None:
        self._note("revoked", kw)

    def rejected(self, app: App, **kw: Any) -> None:
        self.seen.append(f"rejected {kw['reason'][:20]}")


def _steps_app(name: str, **kw: Any) -> tuple[App, Steps]:
    steps = Steps()
    app = make_app(name, middleware=[steps], **kw)

    @app.task(name="ok")
    def ok() -> int:
        return 1

    @app.task(name="bad")
    def bad() -> None:
        raise ValueError("boom")

    @app.task(name="flaky", autoretry_for=(KeyError,), max_retries=1, retry_backoff=0.01)
    def flaky() -> None:
        raise KeyError("again")

    return app, steps


def test_task_hooks_in_order_in_the_worker() -> None:
    from cloudq.testing import process_one

    app, steps = _steps_app("mw-steps")
    ok, bad = app.tasks["ok"].delay(), app.tasks["bad"].delay()
    assert process_one(app) is not None and process_one(app) is not None
    assert steps.seen == [
        f"received {ok.id}",
        f"before_execute {ok.id}",
        f"after_execute {ok.id}:SUCCESS",
        f"received {bad.id}",
        f"before_execute {bad.id}",
        f"after_execute {bad.id}:FAILURE",
        f"dead_letter {bad.id}",
    ]


def test_retry_revoke_and_undecodable_hooks() -> None:
    from cloudq.adapters.base import OutgoingMessage
    from cloudq.testing import process_one

    app, steps = _steps_app("mw-more")
    flaky = app.tasks["flaky"].delay()
    assert process_one(app) is not None
    assert steps.seen[-2:] == [f"retry {flaky.id}", f"after_execute {flaky.id}:RETRY"]
    doomed = app.tasks["ok"].delay()
    app.control.revoke(doomed.id)
    steps.seen.clear()
    app.broker.send("default", [OutgoingMessage(body=b"not json", message_id="junk")])
    while process_one(app) is not None:
        pass
    assert f"revoked {doomed.id}" in steps.seen
    assert any(s.startswith("rejected ") for s in steps.seen)
    assert not any(s.startswith(f"before_execute {doomed.id}") for s in steps.seen)


def test_task_hooks_in_eager_apply_and_task_always_eager() -> None:
    app, steps = _steps_app("mw-eager")
    result = app.tasks["ok"].apply()
    assert steps.seen == [
        f"received {result.id}",
        f"before_execute {result.id}",
        f"after_execute {result.id}:SUCCESS",
    ]
    steps.seen.clear()
    app.conf.task_always_eager = True
    app.tasks["ok"].delay()
    assert [s.split()[0] for s in steps.seen] == ["received", "before_execute", "after_execute"]


def test_signals_run_in_processes_pool_children(tmp_path: Any, monkeypatch: Any) -> None:
    """The app module's receivers run in the child that runs the task, once per child for
    worker_process_init; a failure sends task_failure there too."""
    import os

    from cloudq.testing import wait_for
    from tests.apps import hooks_app

    log = tmp_path / "hooks.log"
    monkeypatch.setenv("HOOKS_LOG", str(log))
    app = hooks_app.app
    with start_worker(app, pool="processes", concurrency=1, app_ref="tests.apps.hooks_app:app"):
        ok = hooks_app.add.delay(2, 3)
        assert ok.get(timeout=30) == 5
        bad = hooks_app.fail.delay()
        wait_for(bad.ready, timeout=30, message="the failing task recorded")
        wait_for(lambda: "task_postrun" in log.read_text() and bad.id in log.read_text(), 10)
    lines = [line.split() for line in log.read_text().splitlines()]
    pids = {pid for _, pid, _ in lines}
    assert str(os.getpid()) not in pids, "every receiver ran in the child, not the parent"
    kinds = [(kind, detail) for kind, _, detail in lines]
    assert kinds[0] == ("worker_process_init", "-")
    assert ("task_prerun", ok.id) in kinds and ("task_postrun", f"{ok.id}:SUCCESS") in kinds
    assert ("task_failure", f"{bad.id}:ValueError") in kinds
    assert ("task_postrun", f"{bad.id}:FAILURE") in kinds


def test_headers_added_before_execute_travel_with_what_the_run_leads_to() -> None:
    """``before_execute``'s ``headers``: the retry carries them, a chain link the trace context
    among them (a tracer's run context); the running task's ``request.headers`` stay."""
    from cloudq import chain
    from cloudq.testing import process_one

    class RunMark(Middleware):
        def before_execute(self, app: App, **kw: Any) -> None:
            run = f"{kw['envelope'].attempt:016x}"
            kw["headers"].update({"x-run": run, "traceparent": f"00-{'a' * 32}-{run}-01"})

    app = make_app("mw-run-headers", middleware=[RunMark()])
    seen: list[tuple[str | None, str | None]] = []

    @app.task(name="flaky", bind=True, autoretry_for=(ConnectionError,))
    def flaky(self: Any) -> int:
        seen.append((self.request.headers.get("x-run"), self.request.headers.get("traceparent")))
        if len(seen) == 1:
            raise self.retry(countdown=0)
        return 1

    @app.task(name="after", bind=True)
    def after(self: Any, x: int) -> None:
        seen.append((self.request.headers.get("x-run"), self.request.headers.get("traceparent")))

    chain(flaky.s(), after.s()).delay()
    while process_one(app) is not None:
        pass
    one, two = f"{1:016x}", f"{2:016x}"
    assert seen == [
        (None, None),
        (one, f"00-{'a' * 32}-{one}-01"),  # the retry: every header of the failed run
        (None, f"00-{'a' * 32}-{two}-01"),  # the chain link: the trace context of the run
    ]
