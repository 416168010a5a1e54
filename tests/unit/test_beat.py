"""Periodic tasks: tick arithmetic, time zones, exactly-once across beats, missed ticks, export."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cloudq import App, ConfigurationError
from cloudq.beat import Beat, ScheduleEntry, make_entry
from cloudq.beat_export import export
from cloudq.testing import FakeClock, wait_for


def make_app(clock: FakeClock | None = None, backend: str | None = None) -> App:
    name = uuid.uuid4().hex
    app = App(
        "b",
        broker=f"memory://{name}",
        backend=backend or f"memory://{name}",
        clock=clock or FakeClock(),
    )

    @app.task(name="report")
    def report(kind: str = "daily") -> str:
        return kind

    return app


def test_every_ticks_are_aligned_to_the_epoch() -> None:
    entry = make_entry(name="e", task="t", every=300)
    t = datetime(2030, 1, 1, 10, 7, 30, tzinfo=UTC)
    assert entry.next_after(t) == datetime(2030, 1, 1, 10, 10, tzinfo=UTC)
    assert entry.next_after(datetime(2030, 1, 1, 10, 10, tzinfo=UTC)) == datetime(
        2030, 1, 1, 10, 15, tzinfo=UTC
    )


def test_cron_in_a_time_zone_follows_daylight_saving() -> None:
    entry = make_entry(name="e", task="t", cron="0 9 * * *", timezone="Europe/Berlin")
    winter = entry.next_after(datetime(2030, 1, 10, 0, 0, tzinfo=UTC))
    summer = entry.next_after(datetime(2030, 7, 10, 0, 0, tzinfo=UTC))
    assert (winter.hour, summer.hour) == (8, 7)  # 09:00 CET = 08:00 UTC, CEST = 07:00 UTC


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression"),
        ({"cron": "* * * * *", "every": 5}, "exactly one"),
        ({}, "exactly one"),
        ({"every": 60, "timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_bad_entries_are_clear_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_entry(name="x", task="t", **fields)


def test_celery_style_schedule_and_decorator() -> None:
    app = make_app()
    app.conf.beat_schedule = {
        "every-30s": {"task": "report", "schedule": 30.0, "args": ("hourly",)},
        "nightly": {"task": "report", "schedule": "0 3 * * *", "options": {"queue": "low"}},
        "td": {"task": "report", "schedule": timedelta(minutes=5)},
    }

    @app.periodic(every=timedelta(hours=1), name="hourly-cleanup")
    def cleanup() -> None: ...

    entries = {e.name: e for e in app.beat_entries()}
    assert entries["every-30s"].every == 30 and entries["every-30s"].args == ["hourly"]
    assert entries["nightly"].cron == "0 3 * * *" and entries["nightly"].queue == "low"
    assert entries["td"].every == 300
    assert entries["hourly-cleanup"].task == cleanup.name


def test_each_tick_is_sent_once_by_three_beats() -> None:
    clock = FakeClock(datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC))
    app = make_app(clock)

    @app.periodic(every=60, name="minutely")
    def minutely() -> None: ...

    beats = [Beat(app) for _ in range(3)]
    for beat in beats:
        beat.start(clock.now())
    for _ in range(5 * 60):  # five minutes, one second at a time, all beats interleaved
        clock.advance(1)
        for beat in beats:
            beat.tick(clock.now())
    assert sum(b.sent for b in beats) == 5
    deliveries = app.broker.receive("default", 10, 0, 30)
    ids = {json.loads(d.body)["id"] for d in deliveries}
    assert len(deliveries) == 5 and len(ids) == 5


def test_three_beat_threads_with_real_time_send_each_tick_once(redis_url: str) -> None:
    prefix = uuid.uuid4().hex
    backend = f"{redis_url}?prefix={prefix}"
    apps = []
    for _ in range(3):
        app = App("b", broker=f"memory://{prefix}", backend=backend)
        app.task(name="report")(lambda: None)
        app.conf.beat_schedule = {"fast": {"task": "report", "schedule": 0.5}}
        apps.append(app)
    beats = [Beat(a, max_sleep=0.05) for a in apps]
    threads = [threading.Thread(target=b.run, daemon=True) for b in beats]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(b.sent for b in beats) >= 4, timeout=10, message="4 ticks sent")
    finally:
        for b in beats:
            b.stop()
        for t in threads:
            t.join(timeout=5)
    deliveries = []
    while got := apps[0].broker.receive("default", 10, 0, 30):
        deliveries += got
    ticks = [json.loads(d.body)["headers"]["cloudq-beat-tick"] for d in deliveries]
    assert len(ticks) == sum(b.sent for b in beats)
    assert len(set(ticks)) == len(ticks), "a tick was sent twice"


@pytest.mark.parametrize(("policy", "expected"), [("run_once", 1), ("skip", 0)])
def test_missed_ticks_policy(policy: str, expected: int) -> None:
    clock = FakeClock(datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC))
    app = make_app(clock)
    app.conf.beat_schedule = {"m": {"task": "report", "schedule": 60.0, "missed": policy}}
    store = app.backend
    assert store is not None
    store.set_marker("beat:last:m", "2030-01-01T11:55:00+00:00")  # type: ignore[attr-defined]
    beat = Beat(app)
    beat.start(clock.now())
    assert beat.sent == expected
    if expected:
        [d] = app.broker.receive("default", 10, 0, 30)
        assert json.loads(d.body)["headers"]["cloudq-beat-tick"] == "2030-01-01T12:00:00+00:00"


def test_send_failure_gives_the_tick_back() -> None:
    clock = FakeClock(datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC))
    app = make_app(clock)
    app.conf.beat_schedule = {"m": {"task": "report", "schedule": 60.0}}
    beat = Beat(app)
    beat.start(clock.now())
    real_send = app.broker.send
    app.broker.send = lambda *a: (_ for _ in ()).throw(OSError("down"))  # type: ignore[method-assign]
    clock.advance(30)
    with pytest.raises(OSError):
        beat.tick(clock.now())
    app.broker.send = real_send  # type: ignore[method-assign]
    beat.tick(clock.now())
    assert beat.sent == 1


def test_export_formats() -> None:
    app = make_app()
    app.conf.beat_schedule = {
        "weekday-9": {"task": "report", "schedule": "0 9 * * 1-5", "kwargs": {"kind": "w"}},
        "quarter-hour": {"task": "report", "schedule": 900.0},
    }
    eb = export(app, "eventbridge")
    assert eb["weekday-9"]["schedule_expression"] == "cron(0 9 ? * 2-6 *)"
    assert eb["quarter-hour"]["schedule_expression"] == "rate(15 minutes)"
    assert json.loads(eb["weekday-9"]["input"])["kwargs"] == {"kind": "w"}  # as given
    cs = export(app, "cloud-scheduler")
    assert cs["quarter-hour"]["schedule"] == "*/15 * * * *"
    assert json.loads(cs["weekday-9"]["input"])["task"] == "report"
    assert set(export(app, "json")) == {"weekday-9", "quarter-hour"}
    app.conf.beat_schedule = {"odd": {"task": "report", "schedule": 7.0}}
    with pytest.raises(ConfigurationError, match="whole minutes"):
        export(app, "eventbridge")


def test_beat_without_entries_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no periodic tasks"):
        Beat(make_app())


def test_schedule_entry_is_json() -> None:
    entry = ScheduleEntry(name="n", task="t", every=5)
    assert ScheduleEntry.model_validate_json(entry.model_dump_json()) == entry
